"""Plan: a config parsed into typed specs (identities, paths) and the units of work they make."""
