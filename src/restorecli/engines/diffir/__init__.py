"""DiffIR: `schedule` (the 4-step prior chain and its respacing) and `engine` (checkpoints, prior, task rules)."""
