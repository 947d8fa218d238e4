"""examples/tiny-nanochat.yaml through `miniseries run --local` (issue 31): nanochat's own base_train,
unmodified, trains the tiny sweep's shapes through the contract adapter; its results land in the store
with provenance naming the trainer; `miniseries report tiny tiny-nanochat` puts both trainers' runs side
by side per depth and refuses their joint fit, naming the trainers; and our evaluators score both final
checkpoints on the same validation bytes (miniseries_trainer.adapters.nanochat_eval).

One depth (d2, at 2 tokens per parameter: 28 steps) of each sweep, in one store: the example's d2 and d3
take many minutes on 2 shared cores (nanochat torch.compiles its model and optimizer before its first
step, and cannot run without: its optimizer's step is compiled with fullgraph=True, so
TORCH_COMPILE_DISABLE=1 fails it), and one depth proves the path.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from miniseries import cli
from miniseries.contract.layout import LOCAL_NAMESPACE

pytestmark = [pytest.mark.slow, pytest.mark.torch]

ROOT = Path(__file__).resolve().parents[2]
NANOCHAT = ROOT.parent / "shared" / "peers" / "nanochat"


def sweep_file(tmp_path: Path, example: str) -> Path:
    doc = yaml.safe_load((ROOT / "examples" / example).read_text())
    doc["spec"]["depths"] = [2]
    doc["spec"]["training"]["tokensPerParam"] = 2
    if "trainer" in doc["spec"]:  # "python" of the example: this test's interpreter
        doc["spec"]["trainer"]["command"][0] = sys.executable
    path = tmp_path / example
    path.write_text(yaml.safe_dump(doc))
    return path


def results(store: Path, sweep: str) -> dict[str, Any]:
    return json.loads((store / LOCAL_NAMESPACE / sweep / "d2" / "results.json").read_text())


def evaluate(*args: str) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "miniseries_trainer.adapters.nanochat_eval", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.mark.skipif(not NANOCHAT.is_dir(), reason=f"no nanochat reference checkout at {NANOCHAT}")
def test_tiny_nanochat_runs_locally_and_compares_with_the_built_in_trainer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for key in ("MINISERIES_TRAINER_MODULE", "MINISERIES_TOKENIZER_MODULE", "MINISERIES_DEVICE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("MINISERIES_NANOCHAT_DIR", str(NANOCHAT))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MINISERIES_CACHE", str(tmp_path / "cache"))  # no eval bundle: no CORE
    store = tmp_path / "store"
    for example in ("tiny.yaml", "tiny-nanochat.yaml"):
        assert cli.main(["run", str(sweep_file(tmp_path, example)), "--local", "--store", str(store)]) == 0
    ours, nano = results(store, "tiny"), results(store, "tiny-nanochat")
    assert ours["provenance"]["trainer"] == "miniseries_trainer"
    assert nano["provenance"]["trainer"] == "nanochat scripts/base_train.py"
    assert (nano["steps"], nano["tokens"]) == (ours["steps"], ours["tokens"])  # same shape, same tokens
    assert nano["provenance"]["dataset_manifest_sha256"] == ours["provenance"]["dataset_manifest_sha256"]
    assert nano["val_bpb"] > 0 and nano["loss"]["final"] > 0

    capsys.readouterr()
    assert cli.main(["report", "tiny", "tiny-nanochat", "--store", str(store)]) == 0
    out = capsys.readouterr().out
    assert "| depth | val bpb tiny | val bpb tiny-nanochat |" in out, out
    [d2] = [line for line in out.splitlines() if line.startswith("| d2 |")]
    assert f"{ours['val_bpb']:.4f} | {nano['val_bpb']:.4f}" in d2, d2
    assert "joint fit refused: refusing a joint fit of rows whose trainer" in out, out
    assert "trainer: miniseries_trainer (tiny/d2) vs nanochat scripts/base_train.py (tiny-nanochat/d2)" in out, out

    # Our evaluator on both final checkpoints, over the same validation bytes
    data = (store / "data" / "shards").as_uri()
    theirs = evaluate("--nanochat-dir", str(NANOCHAT), "--checkpoint", nano["checkpoint_uri"], "--data", data,
                      "--eval-bytes", "20000")  # fmt: skip
    shape = ["--depth=2", "--aspect-ratio=16", "--head-dim=16", "--vocab-size=1024", "--seq-len=128"]
    tokenizer = (store / LOCAL_NAMESPACE / "tiny" / "tokenizer").as_uri()
    mine = evaluate("--ours", "--checkpoint", ours["checkpoint_uri"], "--tokenizer", tokenizer, "--data", data,
                    "--eval-bytes", "20000", *shape)  # fmt: skip
    assert theirs["val_bytes"] == mine["val_bytes"] >= 20000
    assert theirs["val_tokens"] != mine["val_tokens"]  # two tokenizers, the same bytes
    assert 0 < theirs["val_bpb"] < 10 and 0 < mine["val_bpb"] < 10
