"""The PyTorchJob and tokenizer Job manifests the operator creates."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from miniseries.api.spec import ScalingSweepSpec
from miniseries.api.sweepfile import load_sweep
from miniseries.contract.layout import SweepLayout
from miniseries.contract.store.s3 import CREDENTIAL_ENV
from miniseries.control.backends import manifests as jobs
from miniseries.control.backends.pytorchjob import pytorchjob
from miniseries.plan.planner import make_plan
from miniseries.plan.trainer_argv import trainer_flags

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def example() -> tuple[str, ScalingSweepSpec]:
    sweep = load_sweep(EXAMPLES / "miniseries.yaml")
    return sweep.name, sweep.spec


def test_pytorchjob_carries_the_planned_run_exactly() -> None:
    name, spec = example()
    run = make_plan(spec).runs[2]
    job = pytorchjob(spec, name, "uid-1", "ns", run, attempt=2)
    assert job["apiVersion"] == "kubeflow.org/v1" and job["kind"] == "PyTorchJob"
    meta = job["metadata"]
    assert meta["name"] == f"miniseries-d{run.depth}" and DNS1035.match(meta["name"])
    assert meta["namespace"] == "ns"
    assert meta["labels"] == {
        "miniseries.dev/sweep": name,
        "miniseries.dev/run": run.name,
        "miniseries.dev/depth": str(run.depth),
        "miniseries.dev/attempt": "2",
        "miniseries.dev/component": "trainer",
    }
    (owner,) = meta["ownerReferences"]
    assert owner == {
        "apiVersion": "miniseries.dev/v1alpha1",
        "kind": "ScalingSweep",
        "name": name,
        "uid": "uid-1",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    s = job["spec"]
    assert s["nprocPerNode"] == str(run.gpus) == "8"
    assert s["runPolicy"] == {"backoffLimit": 0, "cleanPodPolicy": "Running", "suspend": False}
    assert list(s["pytorchReplicaSpecs"]) == ["Master"]
    master = s["pytorchReplicaSpecs"]["Master"]
    assert master["replicas"] == 1
    (c,) = master["template"]["spec"]["containers"]
    assert c["name"] == "pytorch"
    assert c["image"] == spec.resources.image and c["imagePullPolicy"] == "IfNotPresent"
    grace = master["template"]["spec"]["terminationGracePeriodSeconds"]
    # 8 ranks in one pod; torchrun waits for a preempted worker's checkpoint nearly the pod's whole grace
    assert c["command"] == ["torchrun", f"--shutdown-timeout={grace - 10}", "-m", "--", "miniseries_trainer.train"]
    assert grace - 10 > 30  # more than torchrun's default, which would SIGKILL a d20 checkpoint half-written
    assert c["args"] == trainer_flags(spec, SweepLayout("ns", name), run, sweep_uid="uid-1")
    assert "--sweep-uid=uid-1" in c["args"]  # its checkpoints and results carry the sweep's uid (issue 27)
    assert "--resume=auto" in c["args"]
    assert c["resources"]["limits"] == {"nvidia.com/gpu": "8"}
    assert c["resources"]["requests"]["cpu"] == spec.resources.cpu
    assert c["resources"]["requests"]["memory"] == spec.resources.memory
    # only the store credential keys, one secretKeyRef each: never the whole Secret (issue 27)
    assert "envFrom" not in c
    # beside them only each rank's share of the 16 requested cores, and HOME, the writable scratch volume
    # of a read-only root filesystem (podsecurity.py)
    from_secret = [e for e in c["env"] if "valueFrom" in e]
    assert {e["name"] for e in from_secret} == set(CREDENTIAL_ENV)
    assert [e for e in c["env"] if "valueFrom" not in e] == [
        {"name": "OMP_NUM_THREADS", "value": "2"},
        {"name": "HOME", "value": "/home/trainer"},
    ]
    assert {e["valueFrom"]["secretKeyRef"]["name"] for e in from_secret} == {"miniseries-s3"}
    assert c["ports"] == [{"name": "metrics", "containerPort": 9400, "protocol": "TCP"}]
    ann = master["template"]["metadata"]["annotations"]
    assert ann["prometheus.io/port"] == "9400" and ann["prometheus.io/scrape"] == "true"
    assert master["template"]["metadata"]["labels"]["miniseries.dev/run"] == run.name


def test_suspend_and_no_secret_and_node_selector() -> None:
    spec = ScalingSweepSpec.model_validate(
        {
            "depths": [4],
            "suspend": True,
            "resources": {"gpusPerRun": 2, "nodeSelector": {"gpu": "h100"}},
            "store": {"uri": "file:///tmp/s"},
            "data": {"shardsUri": "file:///tmp/d"},
        }
    )
    run = make_plan(spec).runs[0]
    job = pytorchjob(spec, "s", "u", "ns", run)
    assert job["spec"]["runPolicy"]["suspend"] is True
    tmpl = job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]
    assert tmpl["nodeSelector"] == {"gpu": "h100"}
    # no Secret: no credentials; 16 cores for 2 ranks
    assert tmpl["containers"][0]["env"] == [
        {"name": "OMP_NUM_THREADS", "value": "8"},
        {"name": "HOME", "value": "/home/trainer"},
    ]
    assert tmpl["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": "2"}
    assert job["spec"]["nprocPerNode"] == "2"


def test_longest_names_stay_dns_labels() -> None:
    sweep = "a" * 50
    for run in ("d64", "d64-f2p15e18"):
        assert len(jobs.job_name(sweep, run)) <= 63
    with pytest.raises(ValueError, match="longer than 63"):
        jobs.job_name(sweep, "d64-f2p15e18-extra")


def test_tokenizer_job() -> None:
    name, spec = example()
    job = jobs.tokenizer_job(spec, name, "uid-1", "ns")
    assert job["apiVersion"] == "batch/v1" and job["metadata"]["name"] == "miniseries-tokenizer"
    assert job["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    c = job["spec"]["template"]["spec"]["containers"][0]
    assert c["command"] == ["python", "-m", "miniseries_trainer.tokenizer"]
    assert c["args"] == [
        "--data=s3://miniseries/data/fineweb-edu-100b",
        "--out=s3://miniseries/sweeps/ns/miniseries/tokenizer/",
        "--vocab-size=32768",
        f"--max-chars={spec.data.tokenizer_train_chars}",
    ]
    assert "nvidia.com/gpu" not in c["resources"]["requests"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_tokenizer_args_parse_with_the_tokenizer_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Job's args go through the tokenizer's real argparse (training itself stubbed out)."""
    tok = pytest.importorskip("miniseries_trainer.tokenizer")
    name, spec = example()
    args = jobs.tokenizer_job(spec, name, "u", "ns")["spec"]["template"]["spec"]["containers"][0]["args"]
    seen: dict[str, object] = {}
    monkeypatch.setattr(tok, "iter_training_texts", lambda data, max_chars: seen.update(data=data, chars=max_chars))
    monkeypatch.setattr(tok, "train_bpe", lambda texts, vocab: seen.update(vocab=vocab) or {"vocab_size": vocab})
    monkeypatch.setattr(tok, "save_tokenizer", lambda doc, out: seen.update(out=out))
    assert tok.main(args) == 0
    assert seen == {
        "data": spec.data.shards_uri,
        "chars": spec.data.tokenizer_train_chars,
        "vocab": 32768,
        "out": "s3://miniseries/sweeps/ns/miniseries/tokenizer/",
    }


@pytest.mark.parametrize(
    ("cpu", "gpus", "node_gpus", "threads"),
    [
        ("16", 8, 8, "2"),  # 8 ranks in one pod share its 16 cores
        ("96", 8, 8, "12"),
        ("500m", 1, 8, "1"),  # never none: a fraction of a core still runs one thread
        ("1", 2, 8, "1"),
        ("2.5", 1, 8, "2"),  # a whole thread per whole core
        ("32", 16, 8, "4"),  # two nodes: one pod each, 8 ranks and its own 32 cores
    ],
)
def test_each_rank_gets_its_share_of_the_pods_cpu_as_threads(cpu: str, gpus: int, node_gpus: int, threads: str) -> None:
    """Without OMP_NUM_THREADS torch runs a thread per core of the node in every rank, whatever the pod asked."""
    spec = ScalingSweepSpec.model_validate(
        {
            "depths": [4],
            "resources": {"gpusPerRun": gpus, "nodeGpus": node_gpus, "nodes": 2, "cpu": cpu},
            "store": {"uri": "file:///tmp/s"},
            "data": {"shardsUri": "file:///tmp/d"},
        }
    )
    run = make_plan(spec).runs[0]
    master = pytorchjob(spec, "s", "u", "ns", run)["spec"]["pytorchReplicaSpecs"]["Master"]
    (c,) = master["template"]["spec"]["containers"]
    assert {e["name"]: e.get("value") for e in c["env"]}["OMP_NUM_THREADS"] == threads
