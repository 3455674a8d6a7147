"""ghpo on one machine: `ghpo run` (the whole system as local processes, the README's main-job command),
`ghpo bench` and the study driver, and real trainer batches sampled without the rollout server
(`batches`, for the trainer's bench and tests)."""
