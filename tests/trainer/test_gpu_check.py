"""bench/gpu_check.sh on the CPU (--smoke), and the trainer where the GPU image's missing packages are hidden.

The GPU image has torch, triton, tiktoken, tokenizers, pyarrow, numpy and pyyaml, but neither pydantic nor
boto3: the trainer and the check run here with those two hidden (MINISERIES_FORBID_IMPORTS, which
bench/gpu_check.py installs as an import hook in every process it starts), so an import of either fails
these tests. The nanochat side-by-side runs when MINISERIES_NANOCHAT names a nanochat checkout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from miniseries.contract.layout import LOCAL_NAMESPACE, RunLayout
from miniseries.contract.results import RunResults
from tests.harness.binaries import REPO
from tests.support.tiny_training import Corpus, train_argv, trainer_env

pytest.importorskip("torch")
pytestmark = pytest.mark.torch

HIDDEN = "pydantic,boto3,botocore"
NANOCHAT = os.environ.get("MINISERIES_NANOCHAT")
BUNDLE = Path(os.environ.get("MINISERIES_SHARED_DATA") or REPO.parent / "shared" / "data") / "eval_bundle"
RUN = RunLayout(LOCAL_NAMESPACE, "t", "d1")


def hidden_env() -> dict[str, str]:
    return {**trainer_env(), "MINISERIES_FORBID_IMPORTS": HIDDEN}


def run_trainer_hidden(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """The trainer in a fresh process with pydantic and boto3 hidden by gpu_check's import hook."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import gpu_check; "
        "from miniseries_trainer.train import main; sys.exit(main(sys.argv[2:]))"
    )
    return subprocess.run(
        [sys.executable, "-c", code, str(REPO / "bench"), *argv],
        env=hidden_env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_the_hook_hides_what_it_names() -> None:
    code = "import sys; sys.path.insert(0, sys.argv[1]); import gpu_check; import pydantic"
    out = subprocess.run([sys.executable, "-c", code, str(REPO / "bench")], env=hidden_env(),
                         capture_output=True, text=True, check=False)  # fmt: skip
    assert out.returncode != 0 and "hidden by MINISERIES_FORBID_IMPORTS" in out.stderr


def test_trainer_runs_without_pydantic_and_boto3(corpus: Corpus, tmp_path: Path) -> None:
    out = run_trainer_hidden(train_argv(corpus, tmp_path, target_tokens=64 * 4 * 2 * 3))
    assert out.returncode == 0, out.stderr[-3000:]
    res = RunResults.from_json((tmp_path / RUN.results).read_text())
    assert res.steps == 3 and res.provenance is not None and res.provenance.precision == "fp32"
    # fp8 on this CPU: refused at start, naming the flag and the spec field
    out = run_trainer_hidden([*train_argv(corpus, tmp_path / "fp8"), "--precision", "fp8"])
    assert out.returncode == 2 and "--precision (spec.training.precision) fp8" in out.stderr, out.stderr[-2000:]


@pytest.mark.slow  # inductor's C++ compile of the model and Muon: ~1 min on an idle 2-core box
def test_trainer_compiles_on_cpu_when_asked(corpus: Corpus, tmp_path: Path) -> None:
    """--compile and --precision bf16 on the CPU: they run (the GPU's code path), and each says what it costs."""
    out = run_trainer_hidden(
        [*train_argv(corpus, tmp_path, target_tokens=64 * 4 * 2 * 3), "--compile", "--precision", "bf16"]
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "--compile on cpu" in out.stderr and "--precision bf16 on cpu" in out.stderr
    assert "bf16, compiled" in out.stdout
    res = RunResults.from_json((tmp_path / RUN.results).read_text())
    assert res.provenance is not None and res.provenance.precision == "bf16-autocast"


def test_check_defaults_are_the_example_plans() -> None:
    """gpu_check measures the shape and device batch examples/miniseries.yaml trains (read here, where
    pydantic is; the check itself cannot read specs on the GPU image)."""
    sys.path.insert(0, str(REPO / "bench"))
    import gpu_check

    spec = yaml.safe_load((REPO / "examples" / "miniseries.yaml").read_text())["spec"]
    assert spec["training"]["deviceBatchSize"] == gpu_check.PLAN_DEVICE_BATCH
    assert spec["model"] == {"aspectRatio": 64, "headDim": 128, "vocabSize": 32768, "sequenceLength": 2048}
    assert {12, 20} <= set(range(spec["depthRange"]["min"], spec["depthRange"]["max"] + 1))


@pytest.mark.slow  # two inductor compiles on the CPU (and nanochat's, with MINISERIES_NANOCHAT): minutes
def test_gpu_check_smoke(tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    # --budget-seconds: the GPU's 420 s budget skips figures on a loaded CPU (the compiled figure timed out at
    # 419 s here at load 20 on 2 cores, failing this test); the subprocess timeout below still bounds the run.
    cmd = [str(REPO / "bench" / "gpu_check.sh"), "--smoke", "--budget-seconds", "1100", "--results", str(results)]
    if NANOCHAT:
        cmd += ["--nanochat", NANOCHAT]
    if BUNDLE.is_dir():
        cmd += ["--bundle", BUNDLE.as_uri(), "--core-max-per-task", "11"]
    env = {**trainer_env(), "PYTHON": sys.executable}
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    by = {(r["figure"], r.get("impl"), r.get("compile"), r.get("precision")): r for r in rows}
    assert by[("versions", None, None, None)]["device_name"] == "cpu"
    for compiled in (True, False):
        r = by[("train", "miniseries", compiled, "auto")]
        assert "error" not in r and "skipped" not in r, r
        assert r["tokens_per_second"] > 0 and 0 < r["mfu"] < 1 and r["peak_memory_bytes"] > 0
        assert (r["compile_seconds"] is not None) == compiled
        assert r["params"] == 2 * 512 * 128 + 12 * 2 * 128**2  # shapes.total_params at depth 2, width 128
    assert "compute capability" in by[("train", None, None, "fp8")]["skipped"]
    attention = {r["head_dim"]: r for r in rows if r["figure"] == "attention"}
    assert set(attention) == {16, 10} and all(r["fwd_bwd_ms"] > 0 for r in attention.values())
    if NANOCHAT:
        r = by[("train", "nanochat", True, "auto")]
        assert r["tokens_per_second"] > 0 and r["nanochat_attention"] == "sdpa", r
    if BUNDLE.is_dir():
        core = by[("core", None, None, None)]
        assert core["ours_examples_per_s"] > 0, core
        if NANOCHAT:
            assert core["identical_accuracies"] is True, core
    text = results.read_text()
    assert "· cpu · smoke" in text and "| 2 | miniseries | yes | fp32 | 2 |" in text and "whole check:" in text
