"""Breaks clause C11 (writes outside its run prefix)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kit_trainer

kit_trainer.exit_with(kit_trainer.main(stray_key="local/check/elsewhere.txt"))
