"""Breaks clause C4 (checkpoints on SIGTERM, then exits 1 instead of 75)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kit_trainer

kit_trainer.exit_with(kit_trainer.main(stop_exit=1))
