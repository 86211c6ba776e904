"""Execute: fit and score each unit (features through the cache, fits, sweeps, tasks, executors)."""
