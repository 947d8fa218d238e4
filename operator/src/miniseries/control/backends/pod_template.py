"""The pieces of a trainer pod every backend shares: its command, resources, credentials, thread
count, scrape annotations and grace period. Pure: the spec and a planned run in, dicts out.

A backend puts these where its resource wants them (a PyTorchJob's replica template, a TrainJob's
trainer section and runtimePatches), so a run trains the same way whichever backend runs it.
"""

from __future__ import annotations

import math
from typing import Any

from miniseries.api.grammar import parse_quantity
from miniseries.api.spec import PlannedRun, ScalingSweepSpec
from miniseries.contract.layout import SweepLayout
from miniseries.contract.preemption import checkpoint_bytes
from miniseries.contract.store.s3 import CREDENTIAL_ENV
from miniseries.plan.run_shape import shape_for
from miniseries.plan.trainer_argv import TRAINER_MODULE, custom_trainer_args, trainer_flags

#: Checkpoint bytes per second assumed when sizing the grace period: the trainer's own save
#: (torch.save, sha256, the store's write) measured by bench/preemption.py on the 2-core dev box
#: under load 11-14, three runs: 127-192 MB/s to a local disk, 55-101 MB/s to S3 (versitygw on
#: loopback); the slowest S3 run, rounded down. A GPU node writes faster, so the grace period errs
#: long, which costs nothing: the pod exits as soon as its checkpoint is written.
CHECKPOINT_WRITE_BYTES_PER_SECOND = 50e6
#: Margin on the estimate, and seconds for what is not the write: the stop is noticed after the
#: step in flight, the process group is torn down, the interpreter exits.
GRACE_MARGIN = 1.5
GRACE_FIXED_SECONDS = 30
#: Kubernetes' own default: never less.
MIN_GRACE_SECONDS = 30


def termination_grace_seconds(spec: ScalingSweepSpec, run: PlannedRun) -> int:
    """Seconds a trainer pod gets between SIGTERM and SIGKILL: enough to finish the step in flight
    and write a checkpoint (miniseries_trainer/preemption.py), so a preemption loses no step.

        GRACE_MARGIN x (one step + checkpoint bytes / CHECKPOINT_WRITE_BYTES_PER_SECOND) + GRACE_FIXED_SECONDS

    The step is the plan's own estimate (est_hours / steps: FLOPs over GPUs x peak x assumed MFU).
    The bytes are all ranks' files together (`checkpoint_bytes`: fp32 weights, AdamW's moments once,
    Muon's sharded momentum) as if written one after another, although each rank writes its own
    files at once: that covers ranks that share one NIC or disk. A d20 with the default model dials
    on 8 GPUs: 4.15 GB, ~83 s at 50 MB/s, a ~1 s step: 157 s (bench/preemption.py prints it).
    """
    step_seconds = run.est_hours * 3600.0 / run.steps if run.steps else 0.0
    write_seconds = checkpoint_bytes(shape_for(spec, run.depth)) / CHECKPOINT_WRITE_BYTES_PER_SECOND
    return max(MIN_GRACE_SECONDS, math.ceil(GRACE_MARGIN * (step_seconds + write_seconds) + GRACE_FIXED_SECONDS))


def gpus_per_pod(run: PlannedRun) -> int:
    """GPUs (and trainer processes) in each of a run's pods: one pod per node the run spans."""
    return run.gpus // run.nodes


def trainer_command(processes: int, grace_seconds: int = 30, *, torchrun_for_nodes: bool = False) -> list[str]:
    """One process per pod: the trainer itself, its rank and world from the training-operator's env
    (a TrainJob's pods get no RANK/WORLD_SIZE, only PET_*: `torchrun_for_nodes` for a run over
    several nodes starts torchrun there even for one process per pod).
    More: torchrun, which reads PET_NNODES, PET_NODE_RANK, PET_NPROC_PER_NODE and PET_MASTER_ADDR/PORT.
    Its `--` ends torchrun's own options: without it argparse reads the trainer's flags as abbreviations
    of torchrun's (`--run=d2` is "ambiguous: --run-path, --run_path") and torchrun exits with usage.
    On SIGTERM torchrun passes the signal on and SIGKILLs its workers after --shutdown-timeout (30 s by
    default), shorter than a large checkpoint's write: it gets the pod's grace period, less a margin
    for its own exit, so a preempted worker finishes its checkpoint. (torchrun exits 1 whatever its
    workers' codes: runs.preempted_exit reads the attempt's progress.json instead.)"""
    if processes == 1 and not torchrun_for_nodes:
        return ["python", "-m", TRAINER_MODULE]
    return ["torchrun", f"--shutdown-timeout={max(grace_seconds - 10, 30)}", "-m", "--", TRAINER_MODULE]


def trainer_args(spec: ScalingSweepSpec, sweep: str, uid: str, namespace: str, run: PlannedRun,
                 metrics_port: int) -> list[str]:  # fmt: skip
    """The trainer's flags for one run (plan/trainer_argv.py), fenced by the sweep's uid."""
    return trainer_flags(spec, SweepLayout(namespace, sweep), run, metrics_port=metrics_port, sweep_uid=uid)


def trainer_container(spec: ScalingSweepSpec, sweep: str, uid: str, namespace: str, run: PlannedRun,
                      metrics_port: int, *, torchrun_for_nodes: bool = False) -> tuple[str, list[str], list[str]]:  # fmt: skip
    """The trainer container's image, command and args: the built-in trainer's, or spec.trainer's (its own
    command as given, so a custom trainer that spans processes starts its own torchrun).

    A custom trainer's strings are the user's and the run's values: each `$` is doubled so the kubelet's
    own `$(VAR)` expansion of command and args (container env variables) leaves them exactly as rendered."""
    args = trainer_args(spec, sweep, uid, namespace, run, metrics_port)
    t = spec.trainer
    if t is None:
        command = trainer_command(
            gpus_per_pod(run), termination_grace_seconds(spec, run), torchrun_for_nodes=torchrun_for_nodes
        )
        return spec.resources.image, command, args

    def literal(strings: list[str]) -> list[str]:
        return [s.replace("$", "$$") for s in strings]

    return t.image or spec.resources.image, literal(t.command), literal(custom_trainer_args(t, args))


def scrape_annotations(metrics_port: int) -> dict[str, str]:
    return {"prometheus.io/scrape": "true", "prometheus.io/port": str(metrics_port), "prometheus.io/path": "/metrics"}


def pod_resources(spec: ScalingSweepSpec, run: PlannedRun) -> dict[str, Any]:
    """Requests and limits of each of a run's pods (one per node it spans)."""
    res, gpus = spec.resources, str(gpus_per_pod(run))
    return {
        "requests": {"cpu": res.cpu, "memory": res.memory, "nvidia.com/gpu": gpus},
        "limits": {"nvidia.com/gpu": gpus},
    }


def thread_env(spec: ScalingSweepSpec, run: PlannedRun) -> list[dict[str, Any]]:
    """OMP_NUM_THREADS for each trainer process in a pod: its share of the pod's CPU request, at least one.
    Unset, torch starts a thread per core the node has in every process, whatever the pod requested: eight
    trainers packed on a 224-core node would run 8 x 112 threads, and the spin-waits of those beyond the
    request cost the GPU its feeding (torchrun sets 1 itself, and only when it starts several processes).
    On the test node's 2 shared cores a trainer's second thread made its container cost 2-3x the CPU."""
    share = int(parse_quantity(spec.resources.cpu) // max(1, gpus_per_pod(run)))
    return [{"name": "OMP_NUM_THREADS", "value": str(max(1, share))}]


def trainer_env(spec: ScalingSweepSpec, run: PlannedRun) -> list[dict[str, Any]]:
    """A trainer container's environment: only the store credential keys, never the whole Secret
    (issue 27), and its thread count."""
    return [*credential_env(spec), *thread_env(spec, run)]


def credential_env(spec: ScalingSweepSpec) -> list[dict[str, Any]]:
    """The store credentials as env entries, one optional secretKeyRef per variable the store reads
    (CREDENTIAL_ENV), for every container the operator creates. Never envFrom: every key of the Secret
    would reach the trainer, and a MINISERIES_<FLAG> key there would change training without a spec
    change (issue 27). (A TrainJob's trainer also has `env` but no `envFrom`, and runtimePatches may not
    add env to the trainer's container.) A key the Secret lacks is left unset; a key the Secret has
    beyond these does not reach the trainer."""
    secret = spec.store.credentials_secret
    if not secret:
        return []
    return [{"name": k, "valueFrom": {"secretKeyRef": {"name": secret, "key": k, "optional": True}}}
            for k in CREDENTIAL_ENV]  # fmt: skip
