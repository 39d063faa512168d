"""The miniature: a procedural video world with ground truth, small enough to train the whole method on
a CPU, where forgetting and drifting are measured exactly.

Episodes and rendering (`episodes`, `render`, `assets`, `types`, `meta`, `export`), its text encoder
(`text`) and codec (`codec`, `codec_training`), its clips for the trainer (`clips`, `config`,
`components`, `presets`), its ground-truth metrics (`metrics`, `recall`), the recall probe and long
rollouts (`recall_probe`, `rollout`), the comparison (`rows`, `compare`, `results_page`), the shipped
models (`shipped`) and its commands (`commands/`). It uses the library; the library never imports it.
"""
