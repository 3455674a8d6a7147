"""Wire schemas of every ghpo service API, one module per API (common, inference, rollout, trainer,
verifier, broker).

Import the module you need (`from ghpo.shared.schemas.inference import GenerateRequest`); this package
deliberately imports nothing eagerly, so that loading one API's schemas never drags in the others.
"""
