"""ghpo.trainer: GHPO core math (ghpo.trainer.core), models and the DeepSpeed trainer."""
