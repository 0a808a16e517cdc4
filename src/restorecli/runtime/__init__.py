"""Runtime: a model name becomes a loaded engine, and an engine runs on decoded images.

`load` (registry spec -> weights -> engine; the one module that joins the
weights package and the engines), `device` (device and precision choices),
`restorer` (batches, per-image seeds, tiles, out-of-memory retries) and
`tiling` (cutting and blending tiles). Importing this package is cheap: torch
loads with the submodules that need it.
"""
