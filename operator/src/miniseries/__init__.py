"""miniseries: the control plane (no torch)."""
