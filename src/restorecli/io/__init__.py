"""Image files and pixels: decoding and encoding without losing what a file carries.

`imageio` (files <-> `Picture`: bit depth, alpha, ICC, EXIF, the decompression
bomb guard), `encode16` (16-bit PNG and TIFF writers), `pixels` (`Picture` <->
engine tensors), `files` (image names, folder listings, atomic writes) and `tables`
(rich tables on stdout: fitted to a terminal, whole in a pipe or file).
Imports nothing from the rest of restorecli but `errors`.
"""
