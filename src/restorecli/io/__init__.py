"""Image files and pixels: decoding and encoding without losing what a file carries.

`imageio` (files <-> `Picture`: bit depth, alpha, ICC, EXIF, the decompression
bomb guard), `encode16` (16-bit PNG and TIFF writers), `pixels` (`Picture` <->
engine tensors) and `files` (image names, folder listings, atomic writes).
Imports nothing from the rest of restorecli but `errors`.
"""
