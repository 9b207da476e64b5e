"""Usage rollups (per token, ability and hour, kept as tasks end) and per-token quotas."""
