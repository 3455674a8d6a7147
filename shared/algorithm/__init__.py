"""The GHPO algorithm's torch-free part: pure functions and one config, with no I/O.

Modules:
- `config`      GHPOConfig, the bounded and documented knobs of the algorithm, and its environment form
                (`GHPO_ALGORITHM_*`) that the broker, the rollout server and the trainer all read.
- `hints`       the hint template of the reference code, hint cuts, hint level <-> ratio.
- `difficulty`  difficulty detection on raw accuracy, cold start, the next hint level.
- `advantages`  group-relative advantages (plain Python: the one implementation).

The services and the trainer import these; nothing here imports a service, the trainer, torch, or reads
files. The policy loss, which needs torch, is the trainer's (`ghpo.trainer.core.loss`). This package
deliberately re-exports nothing.
"""
