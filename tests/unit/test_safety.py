"""The pure parts of issue 15's edge checks: the admission policy's decisions, the status writer's
guard against non-finite numbers, which sweeps the operator polls, and Event identity."""

from __future__ import annotations

import json
import math

import pytest

from miniseries.api import grammar
from miniseries.api.policy import Policy, check_prefix, image_matches
from miniseries.api.spec import ScalingSweepStatus, writable
from miniseries.control.decide.sweep_status import needs_polling
from miniseries.control.io.events import event_name


def allowed(prefixes: tuple[str, ...], image: str) -> bool:
    return not Policy(allowed_image_prefixes=prefixes).image_problems(image)


def test_image_prefixes_match_at_a_boundary_of_the_fully_qualified_name() -> None:
    p = ("ghcr.io/miniseries/trainer",)
    assert allowed(p, "ghcr.io/miniseries/trainer:0.1.0")
    assert allowed(p, "ghcr.io/miniseries/trainer@sha256:" + "ab" * 32)
    assert allowed(p, "ghcr.io/miniseries/trainer/nightly:1")
    assert allowed(p, "ghcr.io/miniseries/trainer")
    assert not allowed(p, "ghcr.io/miniseries/trainer-evil:1")
    assert not allowed(p, "ghcr.io/miniseries/trainers:1")
    assert not allowed(p, "ghcr.io/other/trainer:1")
    assert not allowed(p, "evil.io/ghcr.io/miniseries/trainer:1")
    # familiar Docker Hub names are compared as the runtime pulls them
    assert allowed(("docker.io/library/python",), "python:3.11")
    assert not allowed(("docker.io/library/python",), "pythonista/x")
    # a registry, a directory, an exact tag
    assert allowed(("registry.corp:5000",), "registry.corp:5000/team/trainer:1")
    assert not allowed(("localhost",), "localhost:5000/x")  # ':' after a bare registry is another port
    assert allowed(("ghcr.io/miniseries/",), "ghcr.io/miniseries/anything:1")
    assert allowed(("ghcr.io/miniseries/trainer:0.1",), "ghcr.io/miniseries/trainer:0.1")
    assert not allowed(("ghcr.io/miniseries/trainer:0.1",), "ghcr.io/miniseries/trainer:0.1.5")
    assert allowed((), "anything.io/at/all:1")  # no prefixes (--allow-any-image): no image policy
    assert image_matches(grammar.parse_image("x.io/a:1"), "x.io/a")


def test_a_refused_image_names_the_field_the_image_and_the_prefixes() -> None:
    (problem,) = Policy(allowed_image_prefixes=("ghcr.io/miniseries/",)).image_problems("python:3.11")
    assert problem.field == "spec.resources.image"
    assert "'python:3.11' (pulled as 'docker.io/library/python:3.11')" in problem.message
    assert "'ghcr.io/miniseries/'" in problem.message and "admission.allowedImagePrefixes" in problem.message


def test_prefixes_must_name_their_registry() -> None:
    for good in ("ghcr.io/miniseries/", "localhost/x", "registry:5000", "docker.io/library/python"):
        assert check_prefix(good) == good
    for bad in ("python", "miniseries/trainer", "", "ghcr.io/x y", "gнcr.io/x"):
        with pytest.raises(ValueError, match="allowed image prefix"):
            Policy(allowed_image_prefixes=(bad,))
    with pytest.raises(ValueError, match="secret opt-in label"):
        Policy(secret_opt_in_label="not a label")
    with pytest.raises(ValueError, match="max GPU-hours"):
        Policy(max_gpu_hours_without_budget=0)


def test_secrets_need_the_opt_in_label() -> None:
    policy = Policy(secret_opt_in_label="miniseries.dev/allow-sweeps")
    assert policy.secret_problems("team-a", "s3", {"miniseries.dev/allow-sweeps": "true"}) == []
    assert policy.secret_problems("team-a", None, None) == []  # no Secret named: nothing to check
    (no_label,) = policy.secret_problems("team-a", "s3", {"app": "x"})
    assert no_label.field == "spec.store.credentialsSecret"
    assert (
        "'s3' in namespace 'team-a' is not opted in" in no_label.message and "it has no such label" in no_label.message
    )
    assert "kubectl label secret -n team-a s3 miniseries.dev/allow-sweeps=true" in no_label.message
    (wrong,) = policy.secret_problems("team-a", "s3", {"miniseries.dev/allow-sweeps": "yes"})
    assert "it has miniseries.dev/allow-sweeps: 'yes'" in wrong.message
    (missing,) = policy.secret_problems("team-a", "s3", None)
    assert "does not exist in namespace 'team-a'" in missing.message
    assert Policy(secret_opt_in_label="").secret_problems("team-a", "s3", None) == []  # no label: no check


def test_the_status_writer_leaves_out_non_finite_numbers() -> None:
    status = ScalingSweepStatus.model_validate(
        {
            "runs": [{"name": "d1", "depth": 1, "loss": math.nan, "gpuSeconds": math.inf, "costUsd": 2.0}],
            "totals": {"costUsd": math.inf},
            "phase": "Running",
        }
    )
    doc, bad = writable(status.wire())
    assert sorted(bad) == ["status.runs[0].gpuSeconds", "status.runs[0].loss", "status.totals.costUsd"]
    text = json.dumps(doc, allow_nan=False)  # what the API server accepts: strict JSON
    assert '"costUsd": 2.0' in text and doc["runs"][0]["loss"] is None and doc["phase"] == "Running"
    assert writable({"a": [1.5, 2]}) == ({"a": [1.5, 2]}, [])


@pytest.mark.parametrize(
    ("status", "poll"),
    [
        ({}, True),  # never reconciled
        ({"phase": "Pending"}, True),  # the tokenizer runs, seen through the store
        ({"phase": "Running"}, True),
        ({"phase": "Fitting"}, True),  # a failed fit is tried again
        ({"phase": "Succeeded", "fit": {"runsFitted": 3}}, False),
        ({"phase": "Failed"}, False),
        ({"phase": "Degraded", "fit": {"runsFitted": 2}, "totals": {"runsDone": 2}}, False),
        ({"phase": "Degraded", "totals": {"runsDone": 2}}, True),  # its fit is still to do
        ({"phase": "Invalid"}, False),
        ({"phase": "Suspended"}, False),
        # refused by the admission policy: the fix (a label on a Secret) is outside the sweep
        ({"phase": "Invalid", "conditions": [{"type": "Ready", "reason": "AdmissionDenied"}]}, True),
    ],
)
def test_only_sweeps_that_can_still_move_are_polled(status: dict[str, object], poll: bool) -> None:
    assert needs_polling(status) is poll


def test_an_event_is_one_object_per_sweep_and_problem() -> None:
    meta = {"name": "s1", "uid": "u-1"}
    a = event_name(meta, "Warning", "InvalidSpec", "spec.resources.cpu: 'lots' ...")
    assert a == event_name(dict(meta), "Warning", "InvalidSpec", "spec.resources.cpu: 'lots' ...")
    assert a.startswith("s1.") and len(a) == len("s1.") + 16
    assert a != event_name(meta, "Warning", "InvalidSpec", "spec.resources.memory: ...")
    assert a != event_name({"name": "s1", "uid": "u-2"}, "Warning", "InvalidSpec", "spec.resources.cpu: 'lots' ...")
