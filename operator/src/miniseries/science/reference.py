"""Reference CORE scores: where published models sit, and the report's default targets.

Measured GPT-2 scores are nanochat's (dev/LOG.md; eval_bundle/reference/*.csv), the ones the
trainer's `--score-csv` re-scores to the same digits from those CSVs (a unit test checks it).
"""

from __future__ import annotations

#: nanochat's reference points for CORE, measured.
GPT2_CORE = {"GPT-2 small (124M)": 0.113891, "GPT-2 medium (355M)": 0.184903,
             "GPT-2 large (774M)": 0.214641, "GPT-2 XL (1.5B)": 0.256525}  # fmt: skip
#: nanochat's estimates of CORE for GPT-3 (dev/estimate_gpt3_core.ipynb): never measured, calibrated on GPT-2.
GPT3_CORE_ESTIMATED = {"GPT-3 Small (125M, est.)": 0.1484, "GPT-3 XL (1.3B, est.)": 0.2914}
#: The targets every report extrapolates to (more with `miniseries report --target NAME=SCORE`).
DEFAULT_CORE_TARGETS = {"GPT-2 small": GPT2_CORE["GPT-2 small (124M)"], "GPT-2 XL": GPT2_CORE["GPT-2 XL (1.5B)"]}
