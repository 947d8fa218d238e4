"""Preemption, the contract's side (the trainer's is miniseries_trainer/preemption.py): the exit status of a trainer that
stopped on SIGTERM after checkpointing, and how many bytes that checkpoint is.

The trainer (miniseries_trainer.preemption) catches SIGTERM and SIGINT, finishes the optimizer
step in flight, writes a checkpoint and `progress.json` with state "preempted", and exits with
EXIT_PREEMPTED. The operator (control/decide/runs.py) reads that code from the pod's terminated
container and records the run as Preempted: not a failure, no retry spent, relaunched from
the checkpoint without backoff.

Why 75: the code has to mean "checkpointed and stopped on request" and nothing else.
- 0 is success; 1 is Python's uncaught exception; 2 is argparse's and the trainer's own
  `fail` (a flag or input the user must fix).
- 126/127 are the shell's "cannot execute" / "not found".
- 128+N is how a shell and the kubelet report a process killed by signal N: 137 (SIGKILL: the
  OOM killer, or the grace period ran out) and 143 (SIGTERM *not* handled: a trainer that
  died without a checkpoint). 143 must stay a failure, so it cannot be the preempted code.
- 75 is EX_TEMPFAIL in BSD's sysexits.h, "a temporary failure; the user is invited to retry",
  which is what a preemption is. Neither Python, torch nor the shell exits with it by itself.

`checkpoint_bytes` is the size of one checkpoint from the shape alone (see checkpoint.py
in the trainer for the files): the operator sizes the pod's termination grace period from it
(control/backends/pod_template.py), and a trainer test checks it against a real checkpoint's manifest.
"""

from __future__ import annotations

from miniseries.contract.shapes import ModelShape

#: The trainer's exit status after a SIGTERM/SIGINT it turned into a checkpoint (see above).
EXIT_PREEMPTED = 75
#: progress.json's `state` once the trainer has checkpointed on a stop signal.
PROGRESS_PREEMPTED = "preempted"

FP32_BYTES = 4


def checkpoint_bytes(shape: ModelShape) -> int:
    """Bytes of one checkpoint of this shape (all ranks' files together; the same for any world size).

    - model.pt: every parameter in fp32 (the trainer keeps fp32 master weights; bf16 is autocast only).
    - optim_replicated.pt: AdamW's two moments (exp_avg, exp_avg_sq, fp32) of the embedding and
      lm_head, once (AdamW runs replicated, so rank 0's copy is every rank's).
    - optim_rank<r>.pt: Muon's momentum of the matrices rank r owns (sharded: one copy over all
      ranks together).
    So the size no longer grows with the world size (it did while every rank saved its AdamW copy:
    d20 on 8 ranks was 8.85 GB, now 4.1 GB).
    - state_rank<r>.pt and the manifest are not counted: they do not grow with the model (the
      loader's look-ahead of tokenized text, ~200 kB; RNG states; the loss curve, ~100 bytes a
      logged step: ~2 MB for a 20k-step run), megabytes next to a d20's gigabytes.
    """
    model = FP32_BYTES * shape.total_params
    adamw = 2 * FP32_BYTES * (shape.embedding_params + shape.lm_head_params)
    muon = FP32_BYTES * shape.transformer_matrix_params
    return model + adamw + muon
