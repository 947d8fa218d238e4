"""Adapters: outside training scripts run, unmodified, as trainers of the contract (docs/trainer-contract.md)."""
