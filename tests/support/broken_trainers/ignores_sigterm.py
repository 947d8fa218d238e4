"""Breaks clause C4 (ignores SIGTERM and trains on)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kit_trainer

kit_trainer.exit_with(kit_trainer.main(honour_stop=False))
