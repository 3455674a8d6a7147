"""ghpo.trainer: the GHPO policy loss (ghpo.trainer.core), models, evaluation and the DeepSpeed trainer.

It imports ghpo.shared (the torch-free algorithm, scoring, schemas) and ghpo.services, never the CLI."""
