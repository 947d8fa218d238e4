"""scripts/build-images.sh's custom trainer image, trainer + nanochat (issue 31): its cache key follows
what the build reads (the nanochat checkout it copies, or the commit it fetches, and the trainer image it
layers on), so a changed input is a rebuild and an unchanged one is the cached archive. `--print` builds
nothing: no buildah needed."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def printed(**env: str) -> dict[str, str]:
    out = subprocess.run(["bash", str(REPO / "scripts" / "build-images.sh"), "--print"], capture_output=True,
                         text=True, check=True, env={**os.environ, **env}).stdout  # fmt: skip
    return dict(line.split("=", 1) for line in out.split())


def fake_checkout(root: Path) -> Path:
    (root / "scripts").mkdir(parents=True)
    (root / "scripts" / "base_train.py").write_text("print('train')\n")
    (root / "nanochat").mkdir()
    (root / "nanochat" / "gpt.py").write_text("width = 64\n")
    return root


def test_the_nanochat_image_is_a_tag_of_the_trainers_repository_keyed_by_its_inputs(tmp_path: Path) -> None:
    a = fake_checkout(tmp_path / "a")
    got = printed(NANOCHAT_DIR=str(a), MINISERIES_IMAGE_CACHE=str(tmp_path / "cache"))
    # the chart's default admission.allowedImagePrefixes (ghcr.io/miniseries/trainer) covers a tag of it
    assert got["NANOCHAT_IMAGE"] == got["TRAINER_IMAGE"] + "-nanochat"
    key = got["NANOCHAT_ARCHIVE"]
    assert key.startswith(str(tmp_path / "cache" / "nanochat-")) and key != got["TRAINER_ARCHIVE"]
    # a byte of nanochat changed: another key (rebuilt); a copy elsewhere with the same bytes: the same
    b = tmp_path / "b"
    shutil.copytree(a, b)
    assert printed(NANOCHAT_DIR=str(b), MINISERIES_IMAGE_CACHE=str(tmp_path / "cache"))["NANOCHAT_ARCHIVE"] == key
    (b / "nanochat" / "gpt.py").write_text("width = 128\n")
    assert printed(NANOCHAT_DIR=str(b), MINISERIES_IMAGE_CACHE=str(tmp_path / "cache"))["NANOCHAT_ARCHIVE"] != key
    # no checkout: fetched from GitHub at the pinned commit, keyed by the commit
    gone = {"NANOCHAT_DIR": str(tmp_path / "none"), "MINISERIES_IMAGE_CACHE": str(tmp_path / "cache")}
    github = printed(**gone)["NANOCHAT_ARCHIVE"]
    assert github not in (key, printed(**gone, NANOCHAT_COMMIT="0" * 40)["NANOCHAT_ARCHIVE"])
