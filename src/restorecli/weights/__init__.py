"""Weights: which models exist, where their files come from, and how they are stored.

`registry` (weights.toml -> typed specs), `checkpoint` (safe reading of
official files), `bundle` (the safetensors bundle: read, write, metadata, the
spec a trained bundle carries), `convert` (official files -> bundle states,
given a method's canonicaliser), `cache` (where bundles live and their keys),
`download` (HTTP and Hub transfers), `fetch` (get a model's files, verify and
convert them once), `catalog` (the `restore models` table) and `progress`
(status lines and byte bars). Never imports the engines: the method-specific
conversion is passed in (see `restorecli.runtime.load`).
"""
