"""ghpo.services: the HTTP services (verifier, guidance broker, inference, rollout)."""
