"""RDDM: `schedule` (schedules, forward process, samplers as tensor functions) and `engine` (configs, checkpoints, I/O)."""
