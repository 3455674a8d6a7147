"""ghpo.shared: what every ghpo process shares — wire schemas, settings, errors, auth, HTTP client,
logging, the service app factory, the torch-free GHPO algorithm (`algorithm`) and the verifier's pure
scoring (`scoring`). Must never import torch (services without a GPU stack use it), and never imports
the services, the trainer or the CLI (tests/unit/test_layers.py)."""
