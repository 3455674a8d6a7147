"""GHPO core on the trainer's side: the policy loss (torch), with no I/O.

Modules:
- `loss`        the clipped policy loss with its normalisation modes, KL and importance weights (torch).

The torch-free rest of the algorithm (GHPOConfig, hints, difficulty, group advantages) lives in
`ghpo.shared.algorithm`, where the services import it too. Nothing here reads files, talks to services or
touches a model: the trainer's step calls `policy_loss` with tensors it already holds. This package
deliberately re-exports nothing, so importing it does not import torch.
"""
