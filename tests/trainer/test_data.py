"""The corpus CLI, the tokenizer artifact, and the loader's exact resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from miniseries.cli import main as cli_main
from miniseries.contract.store import open_store
from tests.support.tiny_training import VOCAB, Corpus

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch


def test_data_prepare_writes_text_shards_with_a_validation_split(corpus: Corpus) -> None:
    import pyarrow.parquet as pq

    store = open_store(corpus.shards_uri)
    keys = [k for k in store.list("") if k.endswith(".parquet")]
    assert len(keys) >= 3
    manifest = json.loads(store.read_bytes("_manifest.json"))
    assert [s["split"] for s in manifest["shards"]][-1] == "val"
    assert {s["split"] for s in manifest["shards"][:-1]} == {"train"}
    # the default corpus: this Python's standard library, nothing installed, nothing downloaded
    assert manifest["source"] == "stdlib" and "PSF" in manifest["license"]
    assert sum(s["chars"] for s in manifest["shards"]) > 2_000_000
    assert min(s["chars"] for s in manifest["shards"]) > 200_000  # even shards: the validation one is no scrap
    table = pq.read_table(corpus.root / "shards" / keys[0])
    assert table.column_names == ["text"]
    text = " ".join(table.column("text").to_pylist()[:5])
    assert sum(text.count(w) for w in (" the ", " is ", " and ")) > 20  # English prose


def test_data_prepare_errors_name_the_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["data", "prepare", "--out", tmp_path.as_uri(), "--source", str(tmp_path / "none")]) == 2
    assert "--source" in capsys.readouterr().err
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.rst.txt").write_text("just one small document")
    assert cli_main(["data", "prepare", "--out", (tmp_path / "o").as_uri(), "--source", str(tmp_path / "src")]) == 2
    assert "lower --shard-chars" in capsys.readouterr().err


def test_tokenizer_round_trip_and_token_bytes(corpus: Corpus) -> None:
    from miniseries_trainer.tokenizer import load_tokenizer

    tok = load_tokenizer(corpus.tokenizer_uri)
    assert tok.vocab_size == VOCAB
    text = "The quick brown fox returns a list of strings.\n\tdef f(x): return x ** 2  # 12345 ünïcode"
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert len(ids) < len(text.encode())  # merges were learned
    tb = tok.token_bytes()
    assert tb[tok.bos_token_id] == 0
    assert int(tb[torch.tensor(ids)].sum()) == len(text.encode())
    rows = tok.encode_batch([text, "and"], prepend_bos=True)
    assert rows[0][0] == tok.bos_token_id and rows[0][1:] == ids


def test_tokenizer_cli_and_corrupt_artifact(corpus: Corpus, tmp_path: Path) -> None:
    from miniseries.contract.store import StoreError
    from miniseries_trainer.tokenizer import load_tokenizer, main

    out = (tmp_path / "tok").as_uri()
    assert main(["--data", corpus.shards_uri, "--out", out, "--vocab-size", "300", "--max-chars", "20000"]) == 0
    assert load_tokenizer(out).vocab_size == 300
    raw = (tmp_path / "tok" / "tokenizer.json").read_bytes()
    (tmp_path / "tok" / "tokenizer.json").write_bytes(raw.replace(b'"pattern"', b'"patterN"'))
    with pytest.raises(StoreError, match="corrupt"):
        load_tokenizer(out)
    assert main(["--data", corpus.shards_uri, "--out", out, "--vocab-size", "100"]) == 2


def test_loader_resumes_exactly_from_its_state(corpus: Corpus) -> None:
    from miniseries_trainer.loader import TokenLoader
    from miniseries_trainer.shards import list_shards
    from miniseries_trainer.tokenizer import load_tokenizer

    store, tok = open_store(corpus.shards_uri), load_tokenizer(corpus.tokenizer_uri)
    train, val = list_shards(store)
    assert val not in train and val == max([*train, val])
    a = TokenLoader(store, train, tok, batch_size=4, seq_len=64, rank=1, world_size=2)
    for _ in range(37):
        next(a)
    state = json.loads(json.dumps(a.state_dict()))  # small and plain: survives JSON
    b = TokenLoader(store, train, tok, batch_size=4, seq_len=64, rank=1, world_size=2, state=state)
    for _ in range(25):
        (xa, ya), (xb, yb) = next(a), next(b)
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
        assert torch.equal(xa[:, 1:], ya[:, :-1])  # targets are inputs shifted by one
    # ranks see different documents
    c = TokenLoader(store, train, tok, batch_size=4, seq_len=64, rank=0, world_size=2)
    assert not torch.equal(
        next(c)[0], TokenLoader(store, train, tok, batch_size=4, seq_len=64, rank=1, world_size=2).__next__()[0]
    )


def test_the_val_trace_slice_is_spread_over_the_final_evaluations_tokens(corpus: Corpus) -> None:
    """Issue 32: the trace's slice was the first documents of the validation shard (d3's trace sat ~8%
    below its own final evaluation). `keep` picks that many batches evenly over the whole window,
    the first and the last of them included, the same tensors the full read gives at those places."""
    from miniseries_trainer.loader import validation_batches
    from miniseries_trainer.shards import list_shards
    from miniseries_trainer.tokenizer import load_tokenizer

    store, tok = open_store(corpus.shards_uri), load_tokenizer(corpus.tokenizer_uri)
    _train, val = list_shards(store)
    kw = {"batch_size": 2, "seq_len": 32, "eval_tokens": 2 * 32 * 9}
    full = validation_batches(store, val, tok, **kw)
    assert len(full) == 9
    rows_x = torch.cat([x for x, _ in full])  # 18 sequences
    rows_y = torch.cat([y for _, y in full])
    spread = validation_batches(store, val, tok, keep=3, **kw)  # 6 sequences, evenly over the 18
    assert len(spread) == 3 and all(x.shape[0] == 2 for x, _ in spread)
    want = [round(i * 17 / 5) for i in range(6)]  # 0, 3, 7, 10, 14, 17: the first and the last included
    assert torch.equal(torch.cat([x for x, _ in spread]), rows_x[want])
    assert torch.equal(torch.cat([y for _, y in spread]), rows_y[want])
    assert len(validation_batches(store, val, tok, keep=1, **kw)) == 1
    assert len(validation_batches(store, val, tok, keep=20, **kw)) == 9  # more than there are: all of them
