"""One depth of examples/tiny.yaml trained by the built-in trainer and by nanochat's base_train (through
miniseries_trainer.adapters.nanochat) on the same shards with the same contract flags; prints the wall
time, final loss and final val bpb of each from its results.json.

    PYTHONPATH=operator/src:trainer_image/src python scripts/nanochat_side_by_side.py \
        --nanochat-dir ../shared/peers/nanochat --depth 2 --store /tmp/side-store
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from miniseries.api.sweepfile import load_sweep
from miniseries.contract.layout import LOCAL_NAMESPACE, SweepLayout
from miniseries.contract.store import path_to_uri
from miniseries.local.runner import Display, LocalSweep, child_env, prepare_data, train_tokenizer
from miniseries.plan.planner import make_plan
from miniseries.plan.trainer_argv import trainer_flags


def local_sweep(depth: int, store: Path) -> LocalSweep:
    sweep = load_sweep(Path(__file__).resolve().parents[1] / "examples" / "tiny.yaml")
    spec = sweep.spec
    spec = spec.model_copy(update={
        "depths": [depth], "store": spec.store.model_copy(update={"uri": path_to_uri(store)}),
        "data": spec.data.model_copy(update={"shards_uri": path_to_uri(store / "data" / "shards")}),
    })  # fmt: skip
    return LocalSweep(sweep.model_copy(update={"spec": spec}), store, eval_bundle=None)


def train(ls: LocalSweep, name: str, command: list[str]) -> dict[str, Any]:
    """One run of `command` under its own sweep name (so neither resumes the other's checkpoints)."""
    run = make_plan(ls.spec).runs[0]
    own = SweepLayout(LOCAL_NAMESPACE, f"side-{name}")
    flags = trainer_flags(ls.spec, own, run, metrics_port=0, device="cpu", store_uri=ls.spec.store.uri)
    shared = trainer_flags(ls.spec, ls.layout, run, metrics_port=0, device="cpu", store_uri=ls.spec.store.uri)
    flags = [f for f in flags if not f.startswith(("--eval-bundle", "--tokenizer"))]
    flags += [f for f in shared if f.startswith("--tokenizer")]  # the sweep's tokenizer (nanochat trains its own)
    t0 = time.monotonic()
    with (ls.store_dir / f"{name}.log").open("w") as log:
        rc = subprocess.run(command + flags, stdout=log, stderr=subprocess.STDOUT, env=child_env()).returncode
    res = json.loads((ls.store_dir / own.run(run.name).results).read_text())
    return {"rc": rc, "wall_s": round(time.monotonic() - t0, 1), "val_bpb": res["val_bpb"],
            "final_loss": res["loss"]["final"], "steps": res["steps"], "tokens": res["tokens"]}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--nanochat-dir", required=True)
    p.add_argument("--depth", type=int, default=2)
    p.add_argument("--store", type=Path, default=Path("/tmp/nanochat-side-store"))
    args = p.parse_args()
    ls = local_sweep(args.depth, args.store)
    display = Display(total_runs=1, total_flops=0.0, out=sys.stderr)
    prepare_data(ls, display)
    train_tokenizer(ls, display)
    adapter = [sys.executable, "-m", "miniseries_trainer.adapters.nanochat", "--nanochat-dir", args.nanochat_dir]
    out = {"ours": train(ls, "ours", [sys.executable, "-m", "miniseries_trainer.train"])}
    out["nanochat"] = train(ls, "nanochat", adapter)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
