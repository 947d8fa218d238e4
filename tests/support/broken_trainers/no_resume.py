"""Breaks clause C7 (starts from scratch every time)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kit_trainer

kit_trainer.exit_with(kit_trainer.main(resume=False))
