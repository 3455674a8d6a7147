"""ghpo: Guided Hybrid Policy Optimization (arXiv 2507.10628) as a set of services and a trainer.

Import layout, in the one direction imports run: `ghpo.shared` (wire schemas, settings, HTTP plumbing,
the torch-free GHPO algorithm and the verifier's scoring; never imports torch) <- `ghpo.services`
(verifier, broker, inference, rollout) <- `ghpo.trainer` (the policy loss, models, DeepSpeed training,
the weight push) <- this root package's command line (`ghpo.cli`, `ghpo.commands`, `ghpo.local`).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ghpo")
except PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0+unknown"
