"""Breaks clause C8: exits 0 after writing a results.json that is cut off (not JSON)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kit_trainer

kit_trainer.exit_with(kit_trainer.main(results_bytes=b'{"schema_version": 1, "sweep": "check"'))
