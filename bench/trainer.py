"""Trainer throughput on this machine, side by side with nanochat at the same shape.

    python bench/trainer.py [--depth 4 --aspect-ratio 64 --head-dim 64 --seq-len 256 --vocab-size 8192
                             --device-batch-size 8 --steps 10 --nanochat DIR]

Times a full training step (forward, backward, optimizer) of miniseries_trainer's GPT
with Muon+AdamW, and the same for nanochat's GPT (full-context attention, i.e.
window_pattern "L", n_kv_head = n_head) with its MuonAdamW, each in its own process
with the same thread count, on random tokens (the data path is not what is measured).
nanochat is read from a checkout given by --nanochat (e.g. `git clone
https://github.com/karpathy/nanochat DIR`); without one only miniseries is measured. Prints one JSON line.

MFU uses miniseries.contract.shapes' FLOPs per token for both (nanochat's extra value
embeddings are lookups, not matmul FLOPs) over the CPU peak the trainer assumes
(throughput.CPU_PEAK_FLOPS_PER_THREAD x threads).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

WORKER = r"""
import json, resource, sys, time, torch
cfg = json.loads(sys.argv[1])
torch.set_num_threads(cfg["threads"])
torch.manual_seed(0)
from miniseries.contract.shapes import model_shape
shape = model_shape(cfg["depth"], aspect_ratio=cfg["aspect_ratio"], head_dim=cfg["head_dim"],
                    vocab_size=cfg["vocab_size"], sequence_len=cfg["seq_len"])
if cfg["impl"] == "miniseries":
    from miniseries_trainer.model import build_model
    from miniseries_trainer.optim import build_optimizers
    model = build_model(shape, "cpu")
    opts = build_optimizers(model, total_batch_tokens=cfg["batch"] * cfg["seq_len"])
    def opt_step():
        for o in opts:
            o.step()
else:
    sys.path.insert(0, cfg["nanochat"])
    from nanochat.gpt import GPT, GPTConfig
    conf = GPTConfig(sequence_len=shape.sequence_len, vocab_size=shape.padded_vocab_size, n_layer=shape.n_layer,
                     n_head=shape.n_head, n_kv_head=shape.n_head, n_embd=shape.n_embd, window_pattern="L")
    with torch.device("meta"):
        model = GPT(conf)
    model.to_empty(device="cpu")
    model.init_weights()
    opt = model.setup_optimizer()
    opt_step = opt.step
params = sum(p.numel() for p in model.parameters())
x = torch.randint(0, shape.vocab_size, (cfg["batch"], shape.sequence_len))
y = torch.randint(0, shape.vocab_size, (cfg["batch"], shape.sequence_len))
times = []
for i in range(cfg["warmup"] + cfg["steps"]):
    t0 = time.perf_counter()
    loss = model(x, y)
    loss.backward()
    opt_step()
    model.zero_grad(set_to_none=True)
    times.append(time.perf_counter() - t0)
times = sorted(times[cfg["warmup"]:])
median = times[len(times) // 2]
tokens = cfg["batch"] * shape.sequence_len
print(json.dumps({"tokens_per_second": tokens / median, "step_seconds_median": median,
                  "step_seconds_min": times[0], "params": params,
                  "peak_memory_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  "flops_per_token": shape.flops_per_token}))
"""


def measure(impl: str, cfg: dict[str, object]) -> dict[str, float]:
    env = dict(os.environ)
    env["PYTHONPATH"] = f"{REPO / 'operator/src'}:{REPO / 'trainer_image/src'}"
    env["OMP_NUM_THREADS"] = str(cfg["threads"])
    if impl == "nanochat":
        # CPU settings (as nanochat's runs/runcpu.sh): fp32 compute. Its fused Muon step is
        # torch.compile'd; --nanochat-compile keeps that, otherwise it runs eagerly like ours on CPU.
        env["NANOCHAT_DTYPE"] = "float32"
        if not cfg["nanochat_compile"]:
            env["TORCHDYNAMO_DISABLE"] = "1"
    out = subprocess.run(
        [sys.executable, "-c", WORKER, json.dumps({**cfg, "impl": impl})],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"{impl} benchmark failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--aspect-ratio", type=int, default=64)
    p.add_argument("--head-dim", type=int, default=64)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--vocab-size", type=int, default=8192)
    p.add_argument("--device-batch-size", type=int, default=8)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--nanochat", default=None, help="a nanochat checkout (its nanochat/ package); omit: miniseries only"
    )
    p.add_argument("--nanochat-compile", action="store_true", help="keep nanochat's torch.compile'd Muon step")
    args = p.parse_args()
    if args.nanochat and not Path(args.nanochat, "nanochat", "gpt.py").is_file():
        p.error(f"--nanochat {args.nanochat}: no nanochat/gpt.py there; give a nanochat checkout")
    cfg = {
        "depth": args.depth,
        "aspect_ratio": args.aspect_ratio,
        "head_dim": args.head_dim,
        "seq_len": args.seq_len,
        "vocab_size": args.vocab_size,
        "batch": args.device_batch_size,
        "steps": args.steps,
        "warmup": args.warmup,
        "threads": args.threads,
        "nanochat": args.nanochat,
        "nanochat_compile": args.nanochat_compile,
    }
    sys.path.insert(0, str(REPO / "trainer_image/src"))
    from miniseries_trainer.throughput import CPU_PEAK_FLOPS_PER_THREAD

    peak = CPU_PEAK_FLOPS_PER_THREAD * args.threads
    result: dict[str, object] = {
        "bench": "trainer",
        "device": "cpu",
        **{k: v for k, v in cfg.items() if k != "nanochat"},
    }
    ours = measure("miniseries", cfg)
    ours["mfu"] = ours["flops_per_token"] * ours["tokens_per_second"] / peak
    result["miniseries"] = ours
    if args.nanochat:
        theirs = measure("nanochat", cfg)
        theirs["mfu"] = theirs["flops_per_token"] * theirs["tokens_per_second"] / peak
        result["nanochat"] = theirs
        result["speedup_vs_nanochat"] = ours["tokens_per_second"] / theirs["tokens_per_second"]
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
