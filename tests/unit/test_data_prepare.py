"""`miniseries data prepare` is control plane: it must work without torch, on any text directory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("pyarrow")
REPO = Path(__file__).resolve().parents[2]


def test_prepare_from_a_text_directory_without_torch(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(12):
        (src / f"doc{i:02d}.txt").write_text(f"Document {i}. " + "The cat sat on the mat. " * 40)
    out = tmp_path / "out"
    code = (
        "import sys; from miniseries.cli import main; "
        f"rc = main(['data', 'prepare', '--out', {out.as_uri()!r}, '--source', {str(src)!r}, '--glob', '*.txt', "
        "'--shard-chars', '3000', '--val-shards', '2']); "
        "assert 'torch' not in sys.modules, 'control plane imported torch'; sys.exit(rc)"
    )
    env = {"PYTHONPATH": str(REPO / "operator/src"), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "_manifest.json").read_text())
    splits = [s["split"] for s in manifest["shards"]]
    assert splits[-2:] == ["val", "val"] and set(splits[:-2]) == {"train"}
    assert sum(s["documents"] for s in manifest["shards"]) == 12
    assert sorted(p.name for p in out.glob("*.parquet"))[-1] == manifest["shards"][-1]["key"]


def test_trainer_never_imports_the_kubernetes_side() -> None:
    for path in (REPO / "trainer_image/src/miniseries_trainer").glob("*.py"):
        text = path.read_text()
        assert "import kopf" not in text and "import kubernetes" not in text, path


# ---------------------------------------------------------------- the default corpus: the standard library's prose


def test_module_prose_keeps_docstrings_and_prose_comments_in_source_order() -> None:
    from miniseries.data.prepare import module_prose

    src = b'''"""The module's own docstring."""
import os  # a trailing comment is not prose

# This block explains, in plain English words, why the function
# below exists and what a caller should expect from it.
def f(x):
    """Return x doubled, for any number x."""
    y = f"not a docstring {x}"
    # x = compute(y) if y else None  # commented-out code
    return 2 * x


class C:
    """A class with a docstring."""
'''
    text = module_prose(src)
    assert text.split("\n\n") == [
        "The module's own docstring.",
        "This block explains, in plain English words, why the function below exists and what a caller should "
        "expect from it.",
        "Return x doubled, for any number x.",
        "A class with a docstring.",
    ]


def pq_texts(path: Path) -> list[str]:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    assert table.column_names == ["text"]
    return table.column("text").to_pylist()


# ---------------------------------------------------------------- parquet sources (nanochat's layout)


def write_parquet(path: Path, texts: list, row_group_size: int = 3, **extra: list) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"id": list(range(len(texts))), "text": texts, **extra}), path,
                   row_group_size=row_group_size)  # fmt: skip


def test_prepare_from_parquet_shards_streams_the_text_column_in_order(tmp_path: Path) -> None:
    from miniseries.data.prepare import prepare

    src = tmp_path / "fineweb"
    docs = [f"document {i}: " + "words of an educational web page " * 20 for i in range(30)]
    write_parquet(src / "shard_00000.parquet", docs[:12])
    write_parquet(src / "shard_00001.parquet", [*docs[12:20], None, "  "])  # null and blank rows are dropped
    write_parquet(src / "shard_00002.parquet", docs[20:])
    (src / "SHA256SUMS").write_text("not a document\n")  # parquet present: the default glob reads parquet only
    (src / ".shard_00003.parquet.partial").write_bytes(b"half a download")  # hidden: never read
    shards = prepare((tmp_path / "out").as_uri(), source=src, shard_chars=3000, val_shards=1)
    out = [t for s in shards for t in pq_texts(tmp_path / "out" / s.key)]
    assert out == docs  # every document once, in key order
    assert [s.split for s in shards] == ["train"] * (len(shards) - 1) + ["val"] and len(shards) >= 3
    manifest = json.loads((tmp_path / "out" / "_manifest.json").read_text())
    assert manifest["glob"] == "**/*.parquet" and manifest["files"] == 3


def test_the_debian_docs_layout_still_prepares(tmp_path: Path) -> None:
    from miniseries.data.prepare import prepare

    src = tmp_path / "_sources"
    for i, name in enumerate(["library/_thread.rst.txt", "library/os.rst.txt", "tutorial/index.rst.txt"]):
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_text(f"Title {i}\n=======\n\n" + "Some prose about Python. " * 50)
    shards = prepare((tmp_path / "out").as_uri(), source=str(src), shard_chars=1000, val_shards=1)
    assert sum(s.documents for s in shards) == 3  # a name starting with "_" is a document like any other


# ---------------------------------------------------------------- bad input: an error that names the file


def prepare_error(tmp_path: Path, source: object, **kw: object) -> str:
    from miniseries.data.prepare import DataError, prepare

    with pytest.raises(DataError) as e:
        prepare((tmp_path / "out").as_uri(), source=source, **kw)  # type: ignore[arg-type]
    assert not list((tmp_path / "out").glob("*.parquet")), "a failed prepare leaves no shards behind"
    return str(e.value)


def test_parquet_without_a_text_column_is_named(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    write_parquet(tmp_path / "src" / "a.parquet", ["fine " * 300] * 10)
    pq.write_table(pa.table({"content": ["x"], "url": ["u"]}), tmp_path / "src" / "b.parquet")
    msg = prepare_error(tmp_path, tmp_path / "src", shard_chars=100)
    assert str(tmp_path / "src" / "b.parquet") in msg and "no `text` column" in msg and "content, url" in msg


def test_parquet_text_column_of_the_wrong_type_is_named(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "src").mkdir()
    pq.write_table(pa.table({"text": [1, 2, 3]}), tmp_path / "src" / "n.parquet")
    msg = prepare_error(tmp_path, tmp_path / "src")
    assert "n.parquet" in msg and "`text` has type int64" in msg


def test_a_file_named_parquet_that_is_not_one_is_named(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "shard_00000.parquet").write_text("<html>404 Not Found</html>")
    msg = prepare_error(tmp_path, tmp_path / "src")
    assert "shard_00000.parquet is not a readable parquet file" in msg


def test_empty_directory_and_empty_selection(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert "has no files" in prepare_error(tmp_path, tmp_path / "empty")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.md").write_text("text")
    msg = prepare_error(tmp_path, tmp_path / "src", pattern="**/*.txt")
    assert str(tmp_path / "src") in msg and "none matching --glob '**/*.txt'" in msg
    msg = prepare_error(tmp_path, tmp_path / "nowhere")
    assert "--source" in msg and "is not a directory" in msg and "s3://" in msg


def test_binary_and_non_utf8_files_are_named(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("Plain English text. " * 200)
    (src / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    msg = prepare_error(tmp_path, src, shard_chars=100)
    assert str(src / "logo.png") in msg and "binary file (a NUL byte at offset 8)" in msg
    (src / "logo.png").unlink()
    (src / "latin1.txt").write_bytes("caf\xe9 au lait".encode("latin-1"))
    msg = prepare_error(tmp_path, src, shard_chars=100)
    assert str(src / "latin1.txt") in msg and "not UTF-8" in msg and "0xe9 at offset 3" in msg


def test_missing_pyarrow_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from miniseries.cli import main

    monkeypatch.setitem(sys.modules, "pyarrow", None)  # `import pyarrow` now raises ModuleNotFoundError
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    assert main(["data", "prepare", "--out", (tmp_path / "o").as_uri()]) == 2
    err = capsys.readouterr().err
    assert "error: miniseries data prepare needs pyarrow" in err and "pip install 'miniseries[science]'" in err


def test_output_that_already_holds_shards_is_refused(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "shard_00009.parquet").write_bytes(b"PAR1")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.txt").write_text("text " * 1000)
    from miniseries.data.prepare import DataError, prepare

    with pytest.raises(DataError, match=r"--out .* already holds 1 parquet shard\(s\) \(shard_00009.parquet"):
        prepare((tmp_path / "out").as_uri(), source=tmp_path / "src", shard_chars=100)
