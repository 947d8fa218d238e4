"""Breaks clause C8 (exits 0 without results.json)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kit_trainer

kit_trainer.exit_with(kit_trainer.main(results=False))
