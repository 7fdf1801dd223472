"""Tasks of the matching service (expiry sweeps and the like)."""
