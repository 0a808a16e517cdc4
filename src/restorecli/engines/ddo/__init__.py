"""Dynamic Dual-Output diffusion: `schedule` (chains, respacing, the dual-output mix, the loss) and `engine`."""
