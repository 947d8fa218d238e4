"""Trainers that each break one clause of the trainer contract, and a good one (kit_trainer.py)."""
