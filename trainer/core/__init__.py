"""GHPO core: the algorithm's pure functions, with no I/O.

Modules:
- `config`      GHPOConfig, the bounded and documented knobs of the algorithm (torch-free).
- `hints`       the hint template of the reference code, hint cuts, hint level <-> ratio (torch-free).
- `difficulty`  difficulty detection on raw accuracy, cold start, the next hint level (torch-free).
- `advantages`  group-relative advantages (torch).
- `loss`        the clipped policy loss with its normalisation modes, KL and importance weights (torch).

Nothing here reads files, talks to services or touches a model: the trainer and the rollout service call
these functions with tensors and lists they already hold. This package deliberately re-exports nothing,
so that importing the torch-free modules never imports torch.
"""
