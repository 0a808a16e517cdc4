"""ResShift and SinSR: `schedule` (the eta chain and its respacing) and `engine` (the sampler and the autoencoder)."""
