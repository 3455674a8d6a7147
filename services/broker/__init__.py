"""The guidance broker: per-prompt difficulty memory in Redis, hint-level planning, reward-sparsity metrics."""
