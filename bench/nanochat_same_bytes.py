"""The built-in trainer and nanochat's base_train on the tiny sweep, compared on the same validation bytes.

    MINISERIES_NANOCHAT_DIR=DIR miniseries run examples/tiny.yaml --local --store S
    MINISERIES_NANOCHAT_DIR=DIR miniseries run examples/tiny-nanochat.yaml --local --store S
    PYTHONPATH=operator/src:trainer_image/src python bench/nanochat_same_bytes.py --store S \
        --nanochat-dir DIR [--bundle URI --core-max-per-task 20] [--eval-bytes 262144]

Per depth: each sweep's wall time, tokens and its own val bpb (results.json: each trainer's evaluation,
over its own first --eval-tokens tokens), then both final checkpoints scored by our evaluator
(miniseries_trainer.adapters.nanochat_eval) on the validation shard's first --eval-bytes bytes of whole
documents, each with its own tokenizer (so the same bytes), and CORE by our evaluator with each model's
own tokenizer (a bundle missing tasks gives no CORE; then the mean centered accuracy over the tasks it
has, the same tasks for both). Prints a markdown table and the JSON behind it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from miniseries.contract.layout import LOCAL_NAMESPACE


def results(store: Path, sweep: str) -> dict[int, dict[str, Any]]:
    out = {}
    for p in sorted((store / LOCAL_NAMESPACE / sweep).glob("d*/results.json")):
        r = json.loads(p.read_text())
        out[int(r["depth"])] = r
    return out


def evaluate(extra: list[str], res: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "miniseries_trainer.adapters.nanochat_eval", "--checkpoint", res["checkpoint_uri"],
           "--data", (args.store / "data" / "shards").as_uri(), "--eval-bytes", str(args.eval_bytes),
           "--seq-len", str(res["shape"]["sequence_len"]), *extra]  # fmt: skip
    if args.bundle:
        cmd += ["--bundle", args.bundle, "--core-max-per-task", str(args.core_max_per_task)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)}\nexit {done.returncode}:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def ours_flags(res: dict[str, Any], store: Path, sweep: str, aspect_ratio: int) -> list[str]:
    s = res["shape"]  # results.json's shape has the width, not the aspect ratio that made it
    return ["--ours", "--tokenizer", (store / LOCAL_NAMESPACE / sweep / "tokenizer").as_uri(),
            f"--depth={res['depth']}", f"--aspect-ratio={aspect_ratio}", f"--head-dim={s['head_dim']}",
            f"--vocab-size={s['vocab_size']}"]  # fmt: skip


def fmt(v: Any, spec: str) -> str:
    return "—" if v is None else format(v, spec)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--store", type=Path, required=True)
    p.add_argument("--nanochat-dir", required=True)
    p.add_argument("--ours", default="tiny", help="the built-in trainer's sweep")
    p.add_argument("--theirs", default="tiny-nanochat", help="nanochat's sweep")
    p.add_argument("--eval-bytes", type=int, default=262144)
    p.add_argument("--aspect-ratio", type=int, default=16, help="the sweep's spec.model.aspectRatio (tiny.yaml's)")
    p.add_argument("--bundle", default=None)
    p.add_argument("--core-max-per-task", type=int, default=20)
    args = p.parse_args()
    ours, theirs = results(args.store, args.ours), results(args.store, args.theirs)
    rows = []
    for depth in sorted(set(ours) | set(theirs)):
        row: dict[str, Any] = {"depth": depth}
        for side, res in (("ours", ours.get(depth)), ("nanochat", theirs.get(depth))):
            if res is None:
                continue
            extra = (
                ours_flags(res, args.store, args.ours, args.aspect_ratio)
                if side == "ours"
                else ["--nanochat-dir", args.nanochat_dir]
            )
            row[side] = {"wall_s": res["wall_seconds"], "tokens": res["tokens"], "steps": res["steps"],
                         "own_val_bpb": res["val_bpb"], "final_loss": res["loss"]["final"],
                         **evaluate(extra, res, args)}  # fmt: skip
        rows.append(row)
    head = ("| depth | tokens | wall s ours | wall s nanochat | own val bpb ours | own val bpb nanochat "
            "| val bpb ours, same bytes | val bpb nanochat, same bytes | nanochat − ours | CORE ours | CORE nanochat "
            "| centered acc. ours | centered acc. nanochat |")  # fmt: skip
    print(head)
    print("|" + "---:|" * (head.count("|") - 1))
    for r in rows:
        o, n = r.get("ours", {}), r.get("nanochat", {})
        delta = n["val_bpb"] - o["val_bpb"] if o and n else None
        print(f"| d{r['depth']} | {fmt(o.get('tokens') or n.get('tokens'), ',')} | {fmt(o.get('wall_s'), '.1f')} | "
              f"{fmt(n.get('wall_s'), '.1f')} | {fmt(o.get('own_val_bpb'), '.4f')} | {fmt(n.get('own_val_bpb'), '.4f')} | "
              f"{fmt(o.get('val_bpb'), '.4f')} | {fmt(n.get('val_bpb'), '.4f')} | {fmt(delta, '+.4f')} | "
              f"{fmt(o.get('core'), '.4f')} | {fmt(n.get('core'), '.4f')} | "
              f"{fmt(o.get('centered_mean'), '.4f')} | {fmt(n.get('centered_mean'), '.4f')} |")  # fmt: skip
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
