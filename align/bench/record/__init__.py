"""Record: result files, their per-item outputs and the run's ledger, written atomically and read back verified."""
