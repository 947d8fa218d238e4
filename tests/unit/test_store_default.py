"""The local store's default directory is defined once (contract.store) and is where `miniseries report` looks."""

from __future__ import annotations

from pathlib import Path

import pytest

from miniseries import cli
from miniseries.contract.layout import LOCAL_NAMESPACE, SweepLayout
from miniseries.contract.store import DEFAULT_STORE_DIR, LocalStore, open_store, store_uri
from tests.support.synthetic import spec_from, write_sweep


def test_store_uri_takes_a_uri_as_given_and_a_directory_as_its_file_uri(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert store_uri("s3://bucket/prefix") == "s3://bucket/prefix"
    assert store_uri("file:///srv/store") == "file:///srv/store"
    assert store_uri("relative/dir") == (tmp_path / "relative" / "dir").as_uri()
    assert store_uri(tmp_path / "abs") == (tmp_path / "abs").as_uri()
    assert store_uri(None) == (tmp_path / DEFAULT_STORE_DIR).as_uri()
    assert store_uri("") == (tmp_path / DEFAULT_STORE_DIR).as_uri()
    assert isinstance(open_store(store_uri(None)), LocalStore)


def test_report_without_store_reads_the_default_directory(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    store = LocalStore(tmp_path / DEFAULT_STORE_DIR)
    write_sweep(store, "dflt", spec_from({"depths": [2, 3, 4]}))
    assert cli.main(["report", "dflt"]) == 0
    out = capsys.readouterr().out
    assert f"{(tmp_path / DEFAULT_STORE_DIR).as_uri()}/{LOCAL_NAMESPACE}/dflt/report/report.md" in out
    assert store.exists(SweepLayout(LOCAL_NAMESPACE, "dflt").report + "report.json")


def test_report_without_store_names_the_default_directory_when_the_sweep_is_not_there(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli.main(["report", "absent"]) == 2
    err = capsys.readouterr().err
    assert f"{(tmp_path / DEFAULT_STORE_DIR).as_uri()}/{LOCAL_NAMESPACE}/absent/" in err


@pytest.mark.parametrize("command", [["report", "--help"]])
def test_the_help_names_the_default(command: list[str], capsys) -> None:
    with pytest.raises(SystemExit):
        cli.main(command)
    assert f"./{DEFAULT_STORE_DIR}" in capsys.readouterr().out
