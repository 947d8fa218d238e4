"""The validation curve and provenance: persisted by a real run, carried through a restart, sized cheaply."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from miniseries.contract.layout import LOCAL_NAMESPACE, RunLayout
from miniseries.contract.results import RunResults, read_val_curve
from miniseries.contract.store import open_store
from tests.support.tiny_training import Corpus, train_argv

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch
RUN = RunLayout(LOCAL_NAMESPACE, "t", "d1")


def test_val_curve_is_persisted_with_provenance_and_survives_a_restart(corpus: Corpus, tmp_path: Path) -> None:
    from miniseries_trainer.train import main

    argv = train_argv(
        corpus, tmp_path, target_tokens=512 * 40, checkpoint_every=20, eval_tokens=4096, val_every=10, val_tokens=512
    )
    assert main(argv) == 0
    store = open_store(tmp_path.as_uri())
    rows = read_val_curve(store, RUN)
    # every 10 steps but not the last (the full evaluation covers it)
    assert [r["step"] for r in rows] == [10, 20, 30]
    assert all(r["slice_tokens"] == 512 and r["tokens"] == 512 * r["step"] for r in rows)
    assert all(0.5 < r["val_bpb"] < 10 for r in rows)
    assert rows[-1]["val_bpb"] < rows[0]["val_bpb"]  # it learns, and the fixed slice shows it
    res = RunResults.from_json((tmp_path / RUN.results).read_text())
    assert res.val_curve_key == RUN.val_curve
    assert res.val_trace is not None and res.val_trace["points"] == 3 and res.val_trace["every"] == 10
    assert res.val_trace["eval_seconds"] > 0 and res.val_trace["measured_overhead"] is not None

    prov = res.provenance
    assert prov is not None
    assert prov.torch_version == torch.__version__ and prov.device_name == "cpu" and prov.device_count == 1
    assert prov.precision == "fp32" and prov.seed == 7 and prov.trainer_version
    shards = Path(corpus.root / "shards")
    assert prov.dataset_manifest_kind == "manifest"
    assert prov.dataset_manifest_sha256 == hashlib.sha256((shards / "_manifest.json").read_bytes()).hexdigest()
    tok_manifest = json.loads((corpus.root / "tokenizer" / "manifest.json").read_text())
    assert prov.tokenizer_sha256 == tok_manifest["sha256"]
    assert prov.lr_schedule == {"kind": "warmup-stable-decay (linear)", "warmup_steps": 2, "warmdown_ratio": 0.3,
                                "warmdown_shape": "linear", "warmdown_steps": 12, "warmdown_fraction": 0.3}  # fmt: skip
    assert prov.params_convention == "transformer_matrices+lm_head"

    # restarted after it finished: resumes at the end from the checkpoint, which carries the curve
    (tmp_path / RUN.val_curve).unlink()
    assert main(argv) == 0
    res2 = RunResults.from_json((tmp_path / RUN.results).read_text())
    assert res2.val_trace is not None and res2.val_trace["points"] == 3
    assert read_val_curve(store, RUN) == rows


def test_bad_val_flags_are_refused(corpus: Corpus, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from miniseries_trainer.train import main

    with pytest.raises(SystemExit):
        main(train_argv(corpus, tmp_path, val_every=-1))
    assert "--val-every must be >= 0 (0 turns the validation curve off), got -1" in capsys.readouterr().err


@pytest.mark.parametrize(
    "steps,batch,seq,dev_batch,world,eval_tokens",
    [
        (38, 4096, 128, 32, 1, 65536),  # the tiny sweep's d1
        (258, 4096, 128, 32, 1, 65536),  # its d3
        (21400, 2**19, 2048, 32, 8, 10 * 2**19),  # a nanochat d20 on 8 GPUs
        (5, 512, 64, 4, 1, 0),  # shorter than the default number of points
    ],
)
def test_default_plan_costs_at_most_one_percent(
    steps: int, batch: int, seq: int, dev_batch: int, world: int, eval_tokens: int
) -> None:
    from miniseries_trainer.val_trace import plan_val_trace

    plan = plan_val_trace(
        steps=steps,
        total_batch_tokens=batch,
        seq_len=seq,
        device_batch_size=dev_batch,
        world_size=world,
        eval_tokens=eval_tokens,
    )
    assert plan.enabled
    assert plan.expected_overhead(batch) <= 0.0101
    assert plan.tokens >= seq * world and plan.tokens % (seq * world) == 0
    assert plan.batch_size * plan.batches * seq * world == plan.tokens


def test_val_trace_can_be_turned_off() -> None:
    from miniseries_trainer.val_trace import plan_val_trace

    for every, tokens in ((0, None), (None, 0)):
        plan = plan_val_trace(
            steps=100, total_batch_tokens=512, seq_len=64, device_batch_size=4, world_size=1, every=every, tokens=tokens
        )
        assert not plan.enabled and plan.expected_overhead(512) == 0.0
