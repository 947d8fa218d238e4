"""The trainer never prints the credentials it was given (issue 28 item 3): miniseries_trainer.masking,
in real trainer processes, with the secret in their environment as the pod's Secret puts it there."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.tiny_training import Corpus, train_argv, trainer_env

pytestmark = [pytest.mark.torch, pytest.mark.safety]

SECRET = "Zq8/planted+SECRET/value0123456789abcdefg"  # a 40-character AWS-style secret key
KEY_ID = "minio-tenant-a"  # an access key id of no known shape: only the value masking finds it


def _env() -> dict[str, str]:
    return {**trainer_env(), "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_ACCESS_KEY_ID": KEY_ID}


def test_a_trainer_failing_with_its_secret_in_the_message_prints_it_masked(corpus: Corpus, tmp_path: Path) -> None:
    """The real entry point, failing on a tokenizer URI that (by a tenant's mistake) holds the secret."""
    argv = train_argv(corpus, tmp_path, tokenizer=f"file:///nonexistent/{KEY_ID}/{SECRET}/")
    done = subprocess.run(
        [sys.executable, "-m", "miniseries_trainer.train", *argv],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    out = done.stdout + done.stderr
    assert "/nonexistent/***/***/" in out, out[-2000:]  # the failure itself is still told
    assert SECRET not in out and KEY_ID not in out, out[-2000:]


def test_prints_log_records_and_tracebacks_are_masked() -> None:
    program = (
        "import logging, os, sys\n"
        "logging.basicConfig()\n"  # a handler made before install(): the record itself is masked
        "from miniseries_trainer import masking\n"
        "masking.install()\n"
        "key = os.environ['AWS_SECRET_ACCESS_KEY']\n"
        "print('env:', dict(os.environ))\n"
        "print('key id', os.environ['AWS_ACCESS_KEY_ID'], file=sys.stderr)\n"
        "logging.getLogger('boto').warning('signing with %s', key)\n"
        "raise RuntimeError('could not sign with ' + key)\n"
    )
    done = subprocess.run([sys.executable, "-c", program], env=_env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    out = done.stdout + done.stderr
    assert "RuntimeError: could not sign with ***" in done.stderr, done.stderr
    assert "signing with ***" in done.stderr and "key id ***" in done.stderr
    assert "'AWS_SECRET_ACCESS_KEY': '***'" in done.stdout
    assert SECRET not in out and KEY_ID not in out, out
