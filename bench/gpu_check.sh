#!/usr/bin/env bash
# The prepared GPU check (bench/gpu_check.py): one H100/H200, under 8 minutes, the packages the GPU
# image has (torch, triton, tiktoken, tokenizers, pyarrow, numpy, pyyaml; no pydantic, no boto3: they are
# hidden, so a trainer import of either fails the check). Figures print as JSON lines and are appended
# to bench/RESULTS.md.
#
#   bench/gpu_check.sh [--nanochat DIR] [--bundle URI] [--results PATH] [--budget-seconds S] ...
#   bench/gpu_check.sh --smoke          # on a CPU: tiny, seconds to a minute
#
# nanochat: a checkout (git clone https://github.com/karpathy/nanochat DIR); only its nanochat/gpt.py,
# optim.py, flash_attention.py, common.py and core_eval.py are imported (filelock and jinja2 needed).
# The CORE bundle defaults to $MINISERIES_SHARED_DATA/eval_bundle (bench/core_eval.py).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-python3}"
[ -x "$here/../.venv/bin/python" ] && [ -z "${PYTHON:-}" ] && python="$here/../.venv/bin/python"
export MINISERIES_FORBID_IMPORTS="${MINISERIES_FORBID_IMPORTS-pydantic,boto3,botocore}"
export PYTHONUNBUFFERED=1
exec "$python" "$here/gpu_check.py" "$@"
