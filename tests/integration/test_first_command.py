"""The README's first command needs nothing outside the virtualenv.

Runs exactly what `make local` runs (the Makefile's recipe, checked below) as a newcomer's
machine would: a private mount namespace with an empty tmpfs over /usr/share/doc (no Debian
documentation or any other system corpus), a fresh HOME (no ~/.cache/miniseries: no eval
bundle, no binaries), no network but loopback, and a non-root user (root drops to `nobody`
with setpriv; any other user runs in a user namespace as itself). It must finish with the
report written, and show what the tiny sweep shows: three finished runs whose report numbers are
their results.json's, final loss falling with compute as a power law with an exponent in the range
language models show, curves that do not cross; and it must say how to get CORE. (Not N ∝ C^0.5:
in ratio mode D = r·N makes C = 6·r·N², so a = 0.5 by construction and checks nothing.) Slow: the whole tiny sweep on CPU (about a minute on 2 quiet cores).
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from miniseries.contract.layout import LOCAL_NAMESPACE

pytestmark = [pytest.mark.slow, pytest.mark.torch]
REPO = Path(__file__).resolve().parents[2]
MAKE_LOCAL = "$(VENV)/bin/miniseries run examples/tiny.yaml --local"
NOBODY = 65534


def venv_bin() -> Path:
    venv = REPO / ".venv" / "bin"
    return venv if (venv / "miniseries").exists() else Path(sys.executable).parent


def blocked_parents(paths: list[Path]) -> dict[Path, set[str]]:
    """Directories `nobody` cannot pass on the way to `paths`, and the entries below them it needs."""
    blocked: dict[Path, set[str]] = {}
    for path in paths:
        parts = path.parts
        for i in range(1, len(parts) - 1):
            d = Path(*parts[: i + 1])
            if not d.stat().st_mode & stat.S_IXOTH:
                blocked.setdefault(d, set()).add(parts[i + 1])
                break
    return blocked


def namespace_script(cmd: list[str], env: dict[str, str], store: Path, drop_to_nobody: bool, keep: Path) -> str:
    """Shell run inside `unshare`: hide /usr/share/doc, loopback up, the store mounted, then the command."""
    lines = ["set -eu", "mount --make-rprivate /", "mount -t tmpfs -o mode=755 tmpfs /usr/share/doc"]
    if shutil.which("ip"):
        lines.append("ip link set lo up")
    lines.append(f"mount --bind {shlex.quote(str(store))} {shlex.quote(str(REPO / 'miniseries-store'))}")
    if drop_to_nobody:
        # The interpreter may live below a directory only root can pass (pyenv under /root): in this
        # namespace only, an open tmpfs takes that directory's place with just the entries needed.
        needed = [Path(os.path.realpath(sys.executable)), Path(os.path.realpath(venv_bin())), REPO]
        for i, (d, names) in enumerate(sorted(blocked_parents(needed).items())):
            for name in sorted(names):
                saved = keep / f"{i}-{name}"
                saved.mkdir(parents=True)
                lines.append(f"mount --bind {shlex.quote(str(d / name))} {shlex.quote(str(saved))}")
            lines.append(f"mount -t tmpfs -o mode=755 tmpfs {shlex.quote(str(d))}")
            for name in sorted(names):
                target = shlex.quote(str(d / name))
                lines += [f"mkdir {target}", f"mount --bind {shlex.quote(str(keep / f'{i}-{name}'))} {target}"]
        setpriv = f"setpriv --reuid={NOBODY} --regid={NOBODY} --clear-groups"
    else:
        setpriv = ""
    envs = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    lines.append(f"cd {shlex.quote(str(REPO))}")
    lines.append(f"exec {setpriv} env -i {envs} {shlex.join(cmd)}")
    return "\n".join(lines)


@contextlib.contextmanager
def open_dir(owner: int | None) -> Iterator[Path]:
    """A directory under /tmp that `owner` can use (pytest's tmp_path is private to the test's user)."""
    d = Path(tempfile.mkdtemp(prefix="miniseries-fresh-"))
    if owner is not None:
        os.chown(d, owner, owner)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def can_unshare(args: list[str]) -> bool:
    try:
        return subprocess.run([*args, "true"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def test_make_local_needs_only_the_virtualenv() -> None:
    makefile = (REPO / "Makefile").read_text()
    assert f"local: venv\n\t{MAKE_LOCAL}\n" in makefile, "the Makefile's `local` recipe changed: update this test"
    if not shutil.which("unshare") or (os.geteuid() == 0 and not shutil.which("setpriv")):
        pytest.skip("needs unshare (util-linux) and, as root, setpriv")
    root = os.geteuid() == 0
    unshare = ["unshare", "--mount", "--net"] if root else ["unshare", "--user", "--map-root-user", "--mount", "--net"]
    if not can_unshare(unshare):
        pytest.skip(f"{' '.join(unshare)} is not permitted here")
    owner = NOBODY if root else None
    mountpoint = REPO / "miniseries-store"
    made = not mountpoint.exists()
    mountpoint.mkdir(exist_ok=True)  # where the bind mount goes; ignored by git
    try:
        with open_dir(owner) as home, open_dir(owner) as store, open_dir(None) as keep:
            env = {"HOME": str(home), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
            if os.environ.get("PYTHONPATH"):  # a worktree's sources over the shared venv's (developers only)
                env["PYTHONPATH"] = os.environ["PYTHONPATH"]
            if os.environ.get("OMP_NUM_THREADS"):
                # the parallel suite's one thread per trainer: without it torch takes both cores and its
                # threads spin against the other workers' (509-680 s for this test under the parallel
                # default instead of ~80 s alone); a thread count changes nothing a newcomer depends on
                env["OMP_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"]
            cmd = [str(venv_bin() / "miniseries"), "run", "examples/tiny.yaml", "--local"]
            script = namespace_script(cmd, env, store, root, keep)
            t0 = time.time()
            proc = subprocess.run([*unshare, "sh", "-c", script], capture_output=True, text=True, timeout=3600)
            wall = time.time() - t0
            out = proc.stdout + proc.stderr
            assert proc.returncode == 0, out[-5000:]
            assert not (home / ".cache" / "miniseries" / "eval_bundle").exists()
            manifest = json.loads((store / "data" / "shards" / "_manifest.json").read_text())
            assert manifest["source"] == "stdlib"
            assert "CORE: not evaluated" in out and "miniseries data fetch --eval-bundle" in out
            report = store / LOCAL_NAMESPACE / "tiny" / "report"
            md = (report / "report.md").read_text()
            assert "miniseries data fetch --eval-bundle" in md  # the report says how to get CORE
            doc = json.loads((report / "report.json").read_text())
            results = {p.parent.name: json.loads(p.read_text()) for p in report.parent.glob("*/results.json")}
            if root:
                assert (report / "report.md").stat().st_uid == NOBODY  # written by the unprivileged user
    finally:
        if made:
            with contextlib.suppress(OSError):  # only if still empty: a real `make local` may have started since
                mountpoint.rmdir()
    runs = sorted(doc["runs"], key=lambda r: r["depth"])
    losses = [r["final_loss"] for r in runs]
    assert doc["runs_finished"] == 3 and [r["depth"] for r in runs] == [1, 2, 3]
    # the report's numbers are what the runs wrote (results.json), not recomputed or defaulted
    assert sorted(results) == [r["name"] for r in sorted(runs, key=lambda r: r["name"])]
    for r in runs:
        res = results[r["name"]]
        assert (r["final_loss"], r["val_bpb"], r["flops"]) == (res["loss"]["final"], res["val_bpb"], res["flops"])
    assert losses == sorted(losses, reverse=True) and len(set(losses)) == 3  # deeper is better
    assert doc["checks"]["curves_cross"] is False
    # loss falls with compute as L ~ C^-b: the fitted b is positive and in the range language models show
    # (Kaplan et al. 2020: 0.050 for L(C_min); the tiny sweep, far from any irreducible loss: ~0.07)
    b = -float(np.polyfit(np.log([r["flops"] for r in runs]), np.log(losses), 1)[0])
    print(f"\nmake local in a fresh namespace: {wall:.0f} s; final losses by depth {losses}; L ~ C^-{b:.3f}")
    assert 0.02 < b < 0.3, b
