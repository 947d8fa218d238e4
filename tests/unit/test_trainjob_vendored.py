"""The vendored JobSet and Trainer v2 manifests (tests/harness/crds/{jobset,trainer}/) are the pinned
modules' own files, byte for byte, when the modules are in the Go module cache (scripts/build-trainer.sh
puts them there)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.harness.binaries import REPO, pinned_version

pytestmark = pytest.mark.trainjob

VENDORED = REPO / "tests" / "harness" / "crds"
FILES = {
    ("sigs.k8s.io/jobset", "JOBSET_VERSION"): {
        "jobset/jobset.x-k8s.io_jobsets.yaml": "config/components/crd/bases/jobset.x-k8s.io_jobsets.yaml",
        "jobset/webhook-manifests.yaml": "config/components/webhook/manifests.yaml",
        "jobset/mutating-patch.yaml": "config/components/webhook/patches/mutating-patch.yaml",
        "jobset/validating-patch.yaml": "config/components/webhook/patches/validating-patch.yaml",
        "jobset/LICENSE": "LICENSE",
    },
    ("github.com/kubeflow/trainer/v2", "TRAINER_VERSION"): {
        **{
            f"trainer/trainer.kubeflow.org_{k}.yaml": f"manifests/base/crds/trainer.kubeflow.org_{k}.yaml"
            for k in ("trainjobs", "clustertrainingruntimes", "trainingruntimes")
        },
        "trainer/webhook-manifests.yaml": "manifests/base/webhook/manifests.yaml",
        "trainer/patch_mutating.yaml": "manifests/base/webhook/patch_mutating.yaml",
        "trainer/patch_validating.yaml": "manifests/base/webhook/patch_validating.yaml",
        "trainer/torch_distributed.yaml": "manifests/base/runtimes/torch_distributed.yaml",
        "trainer/LICENSE": "LICENSE",
    },
}


def module_dir(module: str, version: str) -> Path:
    """The module's files in the Go module cache, fetched if they are missing (scripts/build-trainer.sh
    fetches them even when its binaries are cached). Only a machine without Go skips: a module
    that cannot be fetched fails, it does not hide the comparison."""
    go = shutil.which("go") or ("/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None)
    if go is None:
        pytest.skip("no Go toolchain (scripts/build-binaries.sh installs one)")
    modcache = subprocess.run([go, "env", "GOMODCACHE"], capture_output=True, text=True, check=True).stdout.strip()
    # the module cache escapes capitals as !lowercase; these paths have none
    path = Path(modcache) / f"{module}@{version}"
    if not path.is_dir():
        got = subprocess.run([go, "mod", "download", f"{module}@{version}"], capture_output=True, text=True,
                             timeout=600, cwd=tempfile.gettempdir())  # outside any module  # fmt: skip
        if got.returncode or not path.is_dir():
            pytest.fail(f"{module}@{version} is not in the Go module cache ({modcache}) and `go mod download` "
                        f"failed: {got.stderr[-1000:]} (scripts/build-trainer.sh fetches it)")  # fmt: skip
    return path


@pytest.mark.parametrize(("module", "key"), list(FILES), ids=[m for m, _ in FILES])
def test_vendored_files_are_the_modules(module: str, key: str) -> None:
    src = module_dir(module, pinned_version(key))
    for ours, theirs in FILES[(module, key)].items():
        assert (VENDORED / ours).read_bytes() == (src / theirs).read_bytes(), f"{ours} differs from {module} {theirs}"
