"""ghpo.shared: what every ghpo process shares — wire schemas, settings, errors, auth, HTTP client,
logging and the service app factory. Must never import torch (services without a GPU stack use it)."""
