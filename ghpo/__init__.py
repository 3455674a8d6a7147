"""ghpo: Guided Hybrid Policy Optimization (arXiv 2507.10628) as a set of services and a trainer.

Import layout: `ghpo.shared` (wire schemas, settings, HTTP plumbing; never imports torch),
`ghpo.services` (verifier, broker, inference, rollout), `ghpo.trainer` (GHPO core math, models,
DeepSpeed training). This root package only holds the `ghpo` command line.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ghpo")
except PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0+unknown"
