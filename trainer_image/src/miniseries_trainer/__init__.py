"""miniseries_trainer: what runs inside every training pod (torch; never kopf/kubernetes)."""
