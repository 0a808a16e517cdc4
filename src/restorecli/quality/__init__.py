"""Image quality: PSNR and SSIM as the literature reports them (`metrics`), and `restore eval` (`evaluate`)."""
