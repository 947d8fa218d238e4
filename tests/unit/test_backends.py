"""The backend registry (control/backends/registry.py): every backend a sweep may name is registered,
and each backend's phase mapping reads every condition its real controller sets, read from the
controller's own source in the Go module cache (the pinned version: scripts/versions.env)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from miniseries.api.spec import Backend
from miniseries.control.backends.job_backend import JobPhase
from miniseries.control.backends.registry import BACKENDS, BY_KIND, backend_for, by_kind
from miniseries.control.decide.observations import observe_job
from tests.harness.binaries import pinned_version
from tests.unit.test_trainjob import cond, trainjob_obj
from tests.unit.test_trainjob_vendored import module_dir

#: Per backend: where its controller declares the condition types it sets (Go module, the version's
#: key in scripts/versions.env, the file, a pattern whose group 1 is a type), and the phase each type
#: must read as. A backend registered without an entry here fails `test_phase_mapping_...`.
CONTROLLERS: dict[Backend, tuple[str, str, str, str, dict[str, JobPhase]]] = {
    Backend.pytorchjob: (
        "github.com/kubeflow/training-operator",
        "TRAINING_OPERATOR_VERSION",
        "pkg/apis/kubeflow.org/v1/common_types.go",
        r'^\s*Job\w+\s+JobConditionType\s*=\s*"(\w+)"',  # JobCreated JobConditionType = "Created"
        {
            "Created": JobPhase.Created,
            "Running": JobPhase.Running,
            "Restarting": JobPhase.Restarting,
            "Suspended": JobPhase.Suspended,
            "Succeeded": JobPhase.Succeeded,
            "Failed": JobPhase.Failed,
        },
    ),
    Backend.trainjob: (
        "github.com/kubeflow/trainer/v2",
        "TRAINER_VERSION",
        "pkg/apis/trainer/v1alpha1/trainjob_types.go",
        # TrainJobComplete string = "Complete"; not the reasons (TrainJob...Reason) nor TrainJobKind
        r'^\s*TrainJob(?!Kind\b)\w*?(?<!Reason)\s+string\s*=\s*"(\w+)"',
        {"Suspended": JobPhase.Suspended, "Complete": JobPhase.Succeeded, "Failed": JobPhase.Failed},
    ),
}


def job_obj(backend: Backend, conditions: list[dict[str, Any]]) -> dict[str, Any]:
    """A job of this backend with these conditions (test_trainjob's TrainJob fixture, and the same for a PyTorchJob)."""
    obj = trainjob_obj(conditions)
    if backend is Backend.trainjob:
        return obj
    return {**obj, "kind": by_kind("PyTorchJob").kind, "spec": {"runPolicy": {"suspend": False}}}


def controller_conditions(backend: Backend) -> set[str]:
    module, key, path, pattern, _ = CONTROLLERS[backend]
    source = (module_dir(module, pinned_version(key)) / path).read_text()
    return set(re.findall(pattern, source, re.M))


def test_every_backend_a_sweep_may_name_is_registered_once() -> None:
    assert set(BACKENDS) == set(Backend)
    assert all(backend_for(b).backend is b for b in Backend)
    assert len(BY_KIND) == len(BACKENDS)  # one kind per backend: a job read back names its backend
    assert len({(b.group, b.plural) for b in BACKENDS.values()}) == len(BACKENDS)


@pytest.mark.parametrize("backend", list(Backend), ids=[b.value for b in Backend])
def test_phase_mapping_covers_every_condition_the_controller_sets(backend: Backend) -> None:
    assert backend in CONTROLLERS, f"{backend.value}: say where its controller declares its conditions"
    expected = CONTROLLERS[backend][4]
    assert controller_conditions(backend) == set(expected), "the controller's conditions changed: map them"
    mapped = dict(backend_for(backend).condition_phases)
    for kind, phase in expected.items():
        assert mapped.get(kind) is phase, f"{backend.value}: condition {kind} is not read as {phase}"
        job = observe_job(job_obj(backend, [cond(kind, reason=kind + "Reason", message="why")]))
        assert (job.phase, job.reason, job.message) == (phase, kind + "Reason", "why")
        # a condition that is no longer True says nothing
        assert observe_job(job_obj(backend, [cond(kind, "False")])).phase is JobPhase.Created


@pytest.mark.parametrize("backend", list(Backend), ids=[b.value for b in Backend])
def test_a_finished_job_keeps_its_end_whatever_came_before(backend: Backend) -> None:
    """Controllers keep old conditions in the list: the end (Succeeded, Failed) wins over all of them."""
    expected = CONTROLLERS[backend][4]
    earlier = [cond(k) for k, p in expected.items() if p not in (JobPhase.Succeeded, JobPhase.Failed)]
    for kind, phase in expected.items():
        if phase in (JobPhase.Succeeded, JobPhase.Failed):
            assert observe_job(job_obj(backend, [*earlier, cond(kind)])).phase is phase
