"""Training RDDM restoration models (`restore train rddm`) and the data they learn from.

`config` (the run's settings and the model spec it produces), `objective`
(the loss), `validate` (held-out scoring with the RDDM engine's own sampler),
`loop` (optimiser, EMA, checkpoints, resume), `datasets` (pairs and crops) and
`degrade` (synthetic degradations). The schedule and the sampler are imported
from `restorecli.engines.rddm.schedule`; inference never imports training.
"""
