"""Credentials out of what many people read (issue 28 item 3): contract/redact.py, and the log tails
the operator copies from a failed pod (control/decide/pod_troubles.py) into status and Events."""

from __future__ import annotations

import pytest

from miniseries.contract.redact import MASK, mask_values, redact, secret_values
from miniseries.control.decide.pod_troubles import trouble_of
from tests.unit.test_pod_trouble import pod

pytestmark = pytest.mark.safety

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
KEY_ID = "AKIAIOSFODNN7EXAMPLE"


@pytest.mark.parametrize(
    ("text", "leaked"),
    [
        (f"AWS_SECRET_ACCESS_KEY={SECRET}", SECRET),
        (f"export aws_secret_access_key='{SECRET}'", SECRET),
        (f'{{"SecretAccessKey": "{SECRET}", "region": "x"}}', SECRET),
        (f"{{'AWS_SECRET_ACCESS_KEY': '{SECRET}'}}", SECRET),
        (f"credentials for {KEY_ID} were refused", KEY_ID),
        ("Authorization: Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln", "eyJhbGciOiJSUzI1NiJ9"),
        ("password: hunter2hunter2", "hunter2hunter2"),
        ("--store-token=tok_live_123456", "tok_live_123456"),
        ("db_password := s3cr3tpass", "s3cr3tpass"),
        ("GET https://alice:pa55w0rd@minio.local/bucket", "pa55w0rd"),
        (f"AWS_SESSION_TOKEN={SECRET}+/==", SECRET),
    ],
)
def test_credential_shapes_are_redacted(text: str, leaked: str) -> None:
    out = redact(text)
    assert leaked not in out and MASK in out, out


@pytest.mark.parametrize(
    "text",
    [
        "target_tokens=524288 total_batch_tokens: 4096 tokenizer: s3://b/t/",
        "step 100/951 loss 3.21 lr 0.02 tokens/s 1.2e5",
        "sha256 0123456789abcdef0123456789abcdef01234567 does not match",
        "StoreError: --data s3://b/none/ has 0 parquet shard(s)",
        f"AWS_SECRET_ACCESS_KEY={MASK}",  # already masked by the trainer: unchanged
    ],
)
def test_what_is_no_credential_is_left_alone(text: str) -> None:
    assert redact(text) == text


def test_the_values_of_the_credential_env_are_masked_whatever_their_shape() -> None:
    env = {
        "AWS_ACCESS_KEY_ID": "minioadmin",
        "AWS_SECRET_ACCESS_KEY": "plainword",
        "WANDB_API_KEY": "abcdef123456",
        "AWS_REGION": "us-east-1",  # not secret
        "MY_TOKEN": "1",  # too short to be one, and masking it would blank every "1"
        "HOME": "/home/trainer",
    }
    values = secret_values(env)
    assert set(values) == {"minioadmin", "plainword", "abcdef123456"}
    text = "connecting as minioadmin with plainword in us-east-1, key abcdef123456, step 1"
    assert mask_values(text, values) == f"connecting as {MASK} with {MASK} in us-east-1, key {MASK}, step 1"


def test_a_failed_pods_log_tail_reaches_status_redacted() -> None:
    log = "\n".join(f"step {i}" for i in range(20)) + (
        f"\nboto3 config: aws_access_key_id={KEY_ID} aws_secret_access_key={SECRET}"
        f"\nbotocore.exceptions.ClientError: SignatureDoesNotMatch for {KEY_ID}"
    )
    t = trouble_of(pod("p", container={"state": {"terminated": {"exitCode": 1, "reason": "Error", "message": log}}}))
    assert t is not None and t.log_tail is not None
    summary = t.summary()
    assert SECRET not in summary and KEY_ID not in summary
    assert "SignatureDoesNotMatch" in summary and "step 19" in summary  # the evidence stays


def test_a_secret_cut_by_the_tail_is_redacted_before_the_cut() -> None:
    log = f"x AWS_SECRET_ACCESS_KEY={SECRET}" + "." * 780  # the 800-character cut falls inside the key
    t = trouble_of(pod("p", container={"state": {"terminated": {"exitCode": 1, "reason": "Error", "message": log}}}))
    assert t is not None and t.log_tail is not None and SECRET[-15:] not in t.log_tail
