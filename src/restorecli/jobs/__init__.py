"""Jobs: what one command does from start to end, on top of the runtime.

`options` (what a task command asks for), `runinfo` (the `-v` line and the
--report page), `discovery` (which files in, which files out, which shard),
`pipeline` (decode, batch, restore, write, report), `report` (records,
progress, summary), `generate` (unconditional sampling to PNGs) and `bench`
(timing engines on synthetic inputs).
"""
