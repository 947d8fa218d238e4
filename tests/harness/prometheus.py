"""A real Prometheus (the Debian package's binary) scraping targets the test names."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from tests.harness.processes import free_port


class Prometheus:
    def __init__(self, url: str, targets_file: Path) -> None:
        self.url = url
        self._targets_file = targets_file

    def scrape(self, job: str, *addresses: str, labels: dict[str, str] | None = None) -> None:
        """Add targets to scrape every second (file-based discovery: no restart). `labels`: target labels
        besides `job`, as a PodMonitor's discovery attaches them (`namespace`: the scraped pod's)."""
        groups = json.loads(self._targets_file.read_text())
        groups.append({"targets": list(addresses), "labels": {**(labels or {}), "job": job}})
        tmp = self._targets_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(groups))
        tmp.replace(self._targets_file)

    def wait_up(self, job: str, timeout: float = 30.0) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            active = requests.get(f"{self.url}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
            mine = [t for t in active if t["labels"].get("job") == job]
            if mine and all(t["health"] == "up" for t in mine):
                return
            time.sleep(0.5)
        raise AssertionError(f"targets of job {job} not up: {mine}")


@contextmanager
def prometheus(tmp_path: Path) -> Iterator[Prometheus]:
    binary = shutil.which("prometheus")
    if not binary:
        pytest.skip("no prometheus binary: `make deps` installs the Debian package")
    tmp_path.mkdir(parents=True, exist_ok=True)
    targets = tmp_path / "targets.json"
    targets.write_text("[]")
    config = tmp_path / "prometheus.yml"
    config.write_text(
        json.dumps(  # JSON is YAML
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "scrape_configs": [
                    {"job_name": "miniseries", "file_sd_configs": [{"files": [str(targets)], "refresh_interval": "1s"}]}
                ],
            }
        )
    )
    port = free_port()
    log = (tmp_path / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 30
        while True:
            try:
                if requests.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise AssertionError(f"prometheus did not start: {(tmp_path / 'prometheus.log').read_text()[-2000:]}")
            time.sleep(0.2)
        yield Prometheus(url, targets)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()
