"""CORE evaluation on the real (partial) DCLM bundle with tiny models: prompts, scoring, ranks, errors.

The tokenizer is a 512-token BPE trained on the bundle's own text (seconds); models are depth 1-2.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from miniseries.contract.core import CORE_TASKS, CoreError
from miniseries.contract.shapes import model_shape
from tests.harness.processes import free_port
from tests.harness.s3 import S3Bucket
from tests.support.core_bundle import REFERENCE_BUNDLE, STAND_INS, complete_bundle, copy_bundle, task_paths

torch = pytest.importorskip("torch")
pytestmark = [
    pytest.mark.torch,
    pytest.mark.skipif(REFERENCE_BUNDLE is None, reason="shared/data/eval_bundle not present"),
]

from miniseries_trainer import core_eval as ce  # noqa: E402
from miniseries_trainer import core_prompts, core_scoring  # noqa: E402
from miniseries_trainer.model import build_model  # noqa: E402
from miniseries_trainer.tokenizer import Tokenizer, save_tokenizer, train_bpe  # noqa: E402

VOCAB = 512
CPU = torch.device("cpu")


def first_row(task: str) -> dict[str, Any]:
    assert REFERENCE_BUNDLE is not None
    with task_paths(REFERENCE_BUNDLE)[task].open() as f:
        return dict(json.loads(f.readline()))


@pytest.fixture(scope="module")
def tokenizer_doc() -> dict[str, Any]:
    assert REFERENCE_BUNDLE is not None

    def texts() -> Any:
        for path in sorted((REFERENCE_BUNDLE / "eval_data").glob("*/*.jsonl")):
            for line in path.read_text().splitlines()[:200]:
                yield " ".join(str(v) for v in json.loads(line).values())

    return train_bpe(texts(), VOCAB)


@pytest.fixture(scope="module")
def tok(tokenizer_doc: dict[str, Any]) -> Tokenizer:
    return Tokenizer(tokenizer_doc)


def tiny_model(seed: int = 0, depth: int = 1, seq_len: int = 256, untrained: bool = False) -> Any:
    torch.manual_seed(seed)
    shape = model_shape(depth, aspect_ratio=64, head_dim=32, vocab_size=VOCAB, sequence_len=seq_len)
    model = build_model(shape, "cpu")
    if not untrained:  # the trainer's init starts every block as the identity: perturb it so attention matters
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


# -----------------------------------------------------------------------------
# Prompts: one real row of each task type, rendered as nanochat's templates render it


def test_multiple_choice_prompt_copa_zero_shot() -> None:
    row = first_row("copa")
    assert core_prompts.render_prompts("multiple_choice", row, " ", []) == [
        "The man turned on the faucet, therefore the toilet filled with water.",
        "The man turned on the faucet, therefore water flowed from the spout.",
    ]


def test_multiple_choice_prompt_arc_easy_with_shots_and_delimiter() -> None:
    assert REFERENCE_BUNDLE is not None
    rows = [json.loads(x) for x in task_paths(REFERENCE_BUNDLE)["arc_easy"].read_text().splitlines()[:3]]
    prompts = core_prompts.render_prompts("multiple_choice", rows[2], "\nAnswer: ", rows[:2])
    assert prompts[3] == (
        "Question: Which statement best explains why photosynthesis is the foundation of most food webs?\n"
        "Answer: Sunlight is the source of energy for nearly all ecosystems.\n\n"
        "Question: Which piece of safety equipment is used to keep mold spores from entering the respiratory system?\n"
        "Answer: breathing mask\n\n"
        "Question: Meiosis is a type of cell division in which germ cells divide to produce haploid cells. "
        "Where does meiosis occur?\nAnswer: ovary cells"
    )
    assert len(prompts) == 4


def test_schema_prompt_winograd() -> None:
    assert core_prompts.render_prompts("schema", first_row("winograd"), " ", []) == [
        "The city councilmen refused the demonstrators a permit because the city councilmen feared violence.",
        "The city councilmen refused the demonstrators a permit because the demonstrators feared violence.",
    ]


def test_language_modeling_prompt_jeopardy_with_a_shot() -> None:
    assert REFERENCE_BUNDLE is not None
    rows = [json.loads(x) for x in task_paths(REFERENCE_BUNDLE)["jeopardy"].read_text().splitlines()[:2]]
    without, with_ = core_prompts.render_prompts("language_modeling", rows[1], "\nAnswer: ", rows[:1])
    head = (
        "WORLD HISTORY: This Navy commander flew from a base at Little America to the South Pole & back "
        "Nov. 28-29, 1929\nAnswer: Admiral Richard Byrd\n\n"
        "WORLD HISTORY: Accused of accepting bribes, Francis Bacon was imprisoned in this forbidding complex in 1621"
    )
    assert without == head + "\nAnswer:"  # stripped: its tokens must be a prefix of the full prompt's
    assert with_ == head + "\nAnswer: Tower of London"


def test_language_modeling_prompt_lambada_zero_shot() -> None:
    row = first_row("lambada_openai")
    without, with_ = core_prompts.render_prompts("language_modeling", row, " ", [])
    assert without.endswith("I don't care about") and without.startswith("In my palm is a clear stone")
    assert with_ == without + " signs"


def test_fewshot_draw_is_nanochats_and_never_the_example_itself() -> None:
    for n, idx, k in [(5, 2, 3), (12, 0, 10), (12, 11, 10), (2117, 5, 10), (20321, 20320, 10)]:
        nanochat = random.Random(1234 + idx).sample([i for i in range(n) if i != idx], k)
        assert core_prompts.fewshot_indices(n, idx, k) == nanochat
        assert idx not in nanochat


def test_spans_follow_the_task_type_and_truncation_keeps_the_continuation(tok: Tokenizer) -> None:
    mc = tok.encode_batch(core_prompts.render_prompts("multiple_choice", first_row("copa"), " ", []), prepend_bos=True)
    _, spans = core_prompts.spans_for("multiple_choice", mc)
    start = core_prompts.common_prefix(mc)
    assert spans == [(start, len(mc[0])), (start, len(mc[1]))] and mc[0][:start] == mc[1][:start]
    sc = tok.encode_batch(core_prompts.render_prompts("schema", first_row("winograd"), " ", []), prepend_bos=True)
    _, spans = core_prompts.spans_for("schema", sc)
    assert [s[1] - s[0] for s in spans] == [core_prompts.common_suffix(sc)] * 2
    assert tok.decode(sc[0][spans[0][0] :]).strip() == "feared violence."
    seq, span = core_prompts.truncate_left(list(range(100)), (90, 100), 32)
    assert seq == list(range(68, 100)) and span == (22, 32)


# -----------------------------------------------------------------------------
# Scores


class GoldOracle:
    """A 'model' that predicts, after any prefix of a gold sequence, that sequence's next token."""

    def __init__(self, gold_seqs: list[list[int]], vocab: int):
        self.trie: dict[int, Any] = {}
        self.vocab = vocab
        for seq in gold_seqs:
            node = self.trie
            for t in seq:
                node = node.setdefault(t, {})

    def __call__(self, idx: Any) -> Any:
        logits = torch.zeros(*idx.shape, self.vocab)
        for b, row in enumerate(idx.tolist()):
            node: dict[int, Any] | None = self.trie
            for t, token in enumerate(row):
                node = node.get(token) if node is not None else None
                if node:
                    logits[b, t, list(node)] = 30.0
        return logits


def test_a_model_that_always_prefers_gold_scores_centered_one(tok: Tokenizer, tmp_path: Path) -> None:
    bundle = ce.load_bundle(complete_bundle(tmp_path / "b").as_uri(), max_per_task=12)
    assert bundle.missing == []
    golds = []
    for task in bundle.tasks:
        for ex in core_prompts.prepare_task(task, tok, max_per_task=12, max_seq_len=256):
            golds.append(ex.seqs[max(ex.gold, 0)])
    result = ce.evaluate_core(GoldOracle(golds, VOCAB), tok, bundle, device=CPU, max_per_task=12, max_seq_len=256)
    assert [t.centered for t in result.tasks] == [pytest.approx(1.0)] * 22
    assert result.core == pytest.approx(1.0) and not result.partial
    assert result.bundle_hash == bundle.version and len(result.bundle_hash) == 64


def test_untrained_model_scores_core_near_zero_on_the_real_bundle(tok: Tokenizer) -> None:
    """Band: |mean centered accuracy over the 16 present tasks| <= 0.08.

    An untrained model never reproduces a continuation greedily (the 7 LM tasks score exactly 0),
    and picks choices at chance on the 9 multiple-choice/schema tasks. With 40 examples per task,
    chance gives a per-task centered std of sqrt(p(1-p)/40)/(1-p) (0.08-0.16), and the mean over
    16 tasks a std of ~0.023; 0.08 is ~3.5 sigma. The model and draw are fixed, so the test is
    deterministic; the band says what any untrained model should satisfy.
    """
    assert REFERENCE_BUNDLE is not None
    result = ce.evaluate_core(
        tiny_model(untrained=True),
        tok,
        REFERENCE_BUNDLE.as_uri(),
        device=CPU,
        max_per_task=40,
        max_seq_len=256,
        allow_partial=True,
    )
    assert result.partial and result.core is None and len(result.tasks) == 16
    assert result.missing_tasks == [t for t in CORE_TASKS if t in STAND_INS]
    mean = sum(t.centered for t in result.tasks) / len(result.tasks)
    assert abs(mean) <= 0.08, [(t.task, t.accuracy) for t in result.tasks]
    lm = [t for t in result.tasks if t.task in ("jeopardy", "lambada_openai", "bigbench_qa_wikidata")]
    assert all(t.accuracy == 0.0 for t in lm)


def small_bundle(
    tmp_path: Path, tasks: tuple[str, ...] = ("copa", "winograd", "bigbench_operators", "arc_easy")
) -> Path:
    """A copy of the reference whose core.yaml lists only `tasks` (one or two of each type)."""
    import yaml

    bundle = copy_bundle(tmp_path / "small")
    doc = yaml.safe_load((bundle / "core.yaml").read_text())
    doc["icl_tasks"] = [t for t in doc["icl_tasks"] if t["label"] in tasks]
    (bundle / "core.yaml").write_text(yaml.safe_dump(doc))
    return bundle


def test_prefix_sharing_rows_score_what_one_row_per_prompt_scores(tok: Tokenizer, tmp_path: Path) -> None:
    bundle = ce.load_bundle(small_bundle(tmp_path).as_uri(), allow_partial=True, max_per_task=24)
    model = tiny_model(depth=2)
    for task in bundle.tasks:
        examples = core_prompts.prepare_task(task, tok, max_per_task=24, max_seq_len=256)
        rows_tree, rows_flat, group = [], [], 0
        for ex in examples:
            rows_tree += core_scoring.build_row(ex, group, share_prefix=True)
            rows_flat += core_scoring.build_row(ex, group, share_prefix=False)
            group += len(ex.seqs)
        fast = core_scoring.score_rows(model, rows_tree, group, device=CPU, pad_id=tok.bos_token_id, batch_tokens=2048)
        plain = core_scoring.score_rows(lambda x: model(x), rows_flat, group, device=CPU, pad_id=0, batch_tokens=2048)
        assert torch.allclose(fast[0], plain[0], atol=1e-4), task.spec.label
        assert torch.equal(fast[1], plain[1])


def _rank_worker(rank: int, port: int, bundle_uri: str, doc: dict[str, Any], out: str) -> None:
    import os

    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        result = ce.evaluate_core(
            tiny_model(), Tokenizer(doc), bundle_uri, device=CPU, max_per_task=24, max_seq_len=256, allow_partial=True
        )
        Path(out, f"rank{rank}.json").write_text(result.to_json().decode())
    finally:
        dist.destroy_process_group()


def test_one_and_two_ranks_give_the_same_score(tok: Tokenizer, tokenizer_doc: dict[str, Any], tmp_path: Path) -> None:
    import torch.multiprocessing as mp

    bundle_uri = small_bundle(tmp_path).as_uri()
    one = ce.evaluate_core(
        tiny_model(), tok, bundle_uri, device=CPU, max_per_task=24, max_seq_len=256, allow_partial=True
    )
    port = free_port()
    mp.spawn(_rank_worker, args=(port, bundle_uri, tokenizer_doc, str(tmp_path)), nprocs=2, join=True)
    for rank in (0, 1):
        two = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert [(t["task"], t["accuracy"], t["examples"]) for t in two["tasks"]] == [
            (t.task, t.accuracy, t.examples) for t in one.tasks
        ]
    assert {t.task for t in one.tasks} == {"copa", "winograd", "bigbench_operators", "arc_easy"}


# -----------------------------------------------------------------------------
# Mistakes


def test_missing_task_file_is_an_error_naming_task_and_file(tmp_path: Path) -> None:
    bundle = complete_bundle(tmp_path / "b")
    task_paths(bundle)["piqa"].unlink()
    with pytest.raises(
        CoreError, match=r"lacks 1 of the 22 CORE tasks: piqa \(no eval_data/commonsense_reasoning/piqa.jsonl\)"
    ):
        ce.load_bundle(bundle.as_uri())
    partial = ce.load_bundle(bundle.as_uri(), allow_partial=True)
    assert partial.missing == ["piqa"] and len(partial.tasks) == 21


def test_the_real_partial_bundle_names_its_six_missing_tasks() -> None:
    assert REFERENCE_BUNDLE is not None
    with pytest.raises(CoreError) as e:
        ce.load_bundle(REFERENCE_BUNDLE.as_uri())
    for task in STAND_INS:
        assert task in str(e.value)
    assert "lacks 6 of the 22" in str(e.value)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"query": "q", "choices": ["a"]', "line 3: not valid JSON"),
        ('{"query": "q", "choices": ["a", "b"], "gold": 2}', "line 3: a multiple_choice row needs query"),
        ('["q"]', "line 3: expected a JSON object"),
    ],
)
def test_malformed_task_file_names_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    bundle = complete_bundle(tmp_path / "b")
    path = task_paths(bundle)["copa"]
    rows = path.read_text().splitlines()
    rows[2] = line
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(CoreError, match=message) as e:
        ce.load_bundle(bundle.as_uri())
    assert "eval_data/commonsense_reasoning/copa.jsonl" in str(e.value)


def test_bad_uri_and_a_cap_below_the_shots_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(CoreError, match=r"has no core\.yaml"):
        ce.load_bundle((tmp_path / "nothing").as_uri())
    with pytest.raises(CoreError, match=r"eval bundle URI .http://x/b."):
        ce.load_bundle("http://x/b")
    with pytest.raises(CoreError, match=r"too small: .* 10-shot task.* use at least 11"):
        ce.load_bundle(complete_bundle(tmp_path / "b").as_uri(), max_per_task=4)


# -----------------------------------------------------------------------------
# Command line


def test_cli_rescores_a_reference_csv_and_exits_2_on_a_bad_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert REFERENCE_BUNDLE is not None
    assert ce.main(["--score-csv", str(REFERENCE_BUNDLE / "reference/openai-community-gpt2-xl.csv")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert abs(out["core"] - 0.256525) < 1e-6 and out["published_core"] == 0.256525
    bad = tmp_path / "bad.csv"
    bad.write_text("Task, Accuracy, Centered\ncopa, lots, 1\n")
    assert ce.main(["--score-csv", str(bad)]) == 2
    assert f"error: {bad} line 2: accuracy of 'copa' must be a number" in capsys.readouterr().err
    assert ce.main(["--score-csv", str(tmp_path / "none.csv")]) == 2
    assert "No such file" in capsys.readouterr().err


def test_cli_evaluates_a_checkpoint(
    tokenizer_doc: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import io

    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    buf = io.BytesIO()
    torch.save(tiny_model().state_dict(), buf)
    (ckpt / "model.pt").write_bytes(buf.getvalue())
    save_tokenizer(tokenizer_doc, (tmp_path / "tok").as_uri())
    flags = ["--checkpoint", ckpt.as_uri(), "--tokenizer", (tmp_path / "tok").as_uri(), "--device", "cpu"]
    shape = ["--depth", "1", "--head-dim", "32", "--vocab-size", str(VOCAB), "--seq-len", "256"]
    bundle = small_bundle(tmp_path, ("copa", "bigbench_operators")).as_uri()
    assert ce.main(["--bundle", bundle, *flags, *shape, "--max-per-task", "11", "--allow-partial"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (
        out["partial"] and out["core"] is None and [t["task"] for t in out["tasks"]] == ["copa", "bigbench_operators"]
    )
    assert ce.main(["--bundle", bundle, *flags, *shape, "--max-per-task", "11"]) == 2
    assert "lacks 20 of the 22 CORE tasks" in capsys.readouterr().err
    assert (
        ce.main(
            [
                "--bundle",
                bundle,
                *flags,
                "--depth",
                "2",
                "--head-dim",
                "32",
                "--vocab-size",
                str(VOCAB),
                "--allow-partial",
            ]
        )
        == 2
    )
    assert "does not fit --depth 2" in capsys.readouterr().err


# -----------------------------------------------------------------------------
# Bits per byte


def test_bits_per_byte_of_a_uniform_model_is_log2_v_times_tokens_per_byte(tok: Tokenizer) -> None:
    import math

    from miniseries_trainer.bpb import evaluate_bpb

    text = first_row("lambada_openai")["context"]
    ids = [tok.bos_token_id, *tok.encode(text), tok.bos_token_id, *tok.encode("Tower of London")]
    # one more position whose target is ignored (-1): it counts in neither sum
    x, y = torch.tensor([[*ids[:-1], ids[-1]]]), torch.tensor([[*ids[1:], -1]])
    token_bytes = tok.token_bytes()

    def uniform(idx: Any) -> Any:
        return torch.zeros(*idx.shape, tok.vocab_size)

    bpb = evaluate_bpb(uniform, [(x, y)], token_bytes, CPU)  # type: ignore[arg-type]
    counted = [t for t in ids[1:] if t != tok.bos_token_id]  # the BOS target has no bytes: left out
    nbytes = len(text.encode()) + len(b"Tower of London")
    assert sum(int(token_bytes[t]) for t in counted) == nbytes
    # the loss is fp32 cross-entropy (ln V to ~1e-7 relative); the sums are float64
    assert bpb == pytest.approx(math.log2(tok.vocab_size) * len(counted) / nbytes, rel=1e-6)


@pytest.mark.s3
def test_the_bundle_reads_the_same_from_s3_as_from_disk(tmp_path: Path, s3: S3Bucket,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """The trainer reads the bundle from the sweep's store: an s3:// bundle on versitygw gives the
    same tasks, rows and version hash as the same files on disk."""
    bundle = complete_bundle(tmp_path / "b")
    for path in sorted(bundle.rglob("*")):
        if path.is_file():
            s3.client.upload_file(str(path), s3.bucket, f"bundles/core/{path.relative_to(bundle).as_posix()}")
    for k, v in s3.env.items():
        monkeypatch.setenv(k, v)
    from_s3 = ce.load_bundle(f"{s3.uri}/bundles/core", max_per_task=11)
    from_disk = ce.load_bundle(bundle.as_uri(), max_per_task=11)
    assert from_s3.version == from_disk.version
    assert [(t.spec.label, len(t.rows)) for t in from_s3.tasks] == [
        (t.spec.label, len(t.rows)) for t in from_disk.tasks
    ]
    s3.client.delete_object(Bucket=s3.bucket, Key="bundles/core/eval_data/commonsense_reasoning/piqa.jsonl")
    with pytest.raises(CoreError, match=r"piqa \(no eval_data/commonsense_reasoning/piqa.jsonl\)"):
        ce.load_bundle(f"{s3.uri}/bundles/core")
