"""Data-parallel training throughput: samples/second of ``train()`` (PoKD from a frozen teacher, the full
augmentation recipe) with 1, 2, ... processes under torchrun, and where each batch's time goes.

    .venv/bin/python benchmarks/bench_ddp.py [--procs 1,2] [--device cpu] [--arch small] [--width 0.5]
                                             [--clips 192] [--batch 64] [--epochs 2] [--threads 1]

Each process count is one ``torchrun --standalone --nproc-per-node N`` launch of this file (gloo on the CPU,
nccl with ``--device cuda``). The global batch stays ``--batch`` (each rank takes batch / N rows), so every
count does the same work per epoch. Besides the end-to-end figure, rank 0 times one global batch's parts:
augmenting the global batch (every rank does it), the teacher's forward pass on the rank's rows, the student's
forward + backward on them (no communication), and an all-reduce of as many floats as the student and loss
have gradients.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from esc2c.compress import distributed  # noqa: E402
from esc2c.compress.augment import AugmentConfig, augment_batch, targets  # noqa: E402
from esc2c.compress.losses import make_loss  # noqa: E402
from esc2c.compress.train import TrainConfig, train  # noqa: E402
from esc2c.models.registry import build_model  # noqa: E402

IN = (1, 40, 126)        # 4 s UrbanSound8K clips: 40 mels x 126 frames
AUG = AugmentConfig(time_shift=0.25, freq_masks=2, freq_mask=0.15, time_masks=2, time_mask=0.1, mixup_alpha=0.2,
                    label_smoothing=0.1)


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _timed(fn, dev, reps: int = 3) -> float:
    fn()
    _sync(dev)
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    _sync(dev)
    return (time.perf_counter() - t) / reps


def worker(args) -> None:
    env = distributed.setup(args.device)
    torch.set_num_threads(args.threads)
    dev = env.device
    g = np.random.default_rng(0)
    y = g.integers(0, 10, args.clips).astype(np.int64)
    x = g.normal(0, 1, (args.clips, *IN)).astype(np.float32)
    torch.manual_seed(0)
    teacher = build_model(args.arch, 10, args.width, IN, aux=True).to(dev).eval()
    student = build_model(args.arch, 10, args.width / 2, IN, aux=True)
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch, progress=False, verbose=False, device=str(dev),
                      augment=AUG, schedule="cosine", warmup_epochs=0.5)
    distributed.barrier()
    t0 = time.perf_counter()
    train(student, (x, y), None, "pokd", teacher=teacher, cfg=cfg)
    _sync(dev)
    distributed.barrier()
    wall = time.perf_counter() - t0

    # one global batch, part by part (this rank's share)
    xt, yt = torch.from_numpy(x[:args.batch]), torch.from_numpy(y[:args.batch])
    lo, hi = distributed.share(args.batch, env.world, env.rank)
    gen = torch.Generator().manual_seed(0)
    xb = augment_batch(xt, AUG, gen)[0][lo:hi].to(dev)
    tgt = targets(yt.to(dev), 10, AUG, None)[lo:hi]
    student.to(dev).train()
    loss = make_loss("pokd").to(dev)
    with torch.no_grad():
        t_out = teacher.forward_all(xb)

    def fwd_bwd():
        student.zero_grad(set_to_none=True)
        value, _ = loss(student.forward_all(xb), t_out, tgt)
        value.backward()

    def teacher_fwd():
        with torch.no_grad():
            teacher.forward_all(xb)

    n_grad = sum(p.numel() for p in student.parameters())
    flat = torch.zeros(n_grad, device=dev)
    parts = {"augment_ms": _timed(lambda: augment_batch(xt, AUG, gen), torch.device("cpu")) * 1e3,
             "teacher_fwd_ms": _timed(teacher_fwd, dev) * 1e3,
             "student_fwd_bwd_ms": _timed(fwd_bwd, dev) * 1e3,
             "allreduce_ms": _timed(lambda: torch.distributed.all_reduce(flat), dev) * 1e3 if env.world > 1 else 0.0}
    if env.is_main:
        print(json.dumps({"procs": env.world, "backend": env.backend or "none", "seconds": wall,
                          "samples_per_s": args.clips * args.epochs / wall, "grad_floats": n_grad, **parts}),
              flush=True)
    distributed.shutdown(env)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--procs", default="1,2")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--arch", default="small")
    ap.add_argument("--width", type=float, default=0.5)
    ap.add_argument("--clips", type=int, default=192)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return
    rows = []
    for n in (int(p) for p in args.procs.split(",")):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={n}", __file__,
               "--worker", *sys.argv[1:]]
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        p = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if p.returncode != 0:
            sys.exit(f"{n} processes failed:\n{p.stderr[-3000:]}")
        rows.append(json.loads([ln for ln in p.stdout.splitlines() if ln.startswith("{")][-1]))
    print(f"{args.arch} width {args.width} (student {args.width / 2}), input {IN}, {args.clips} clips x "
          f"{args.epochs} epochs, global batch {args.batch}, {args.threads} thread(s) per process, {args.device}")
    print("procs backend  samples/s  speed-up | per batch on rank 0 (ms): augment  teacher-fwd  student-fwd+bwd  "
          "all-reduce")
    for r in rows:
        speedup = r["samples_per_s"] / rows[0]["samples_per_s"]
        print(f"{r['procs']:5d} {r['backend']:7s} {r['samples_per_s']:10.1f} {speedup:8.2f}x"
              f" | {r['augment_ms']:33.1f} {r['teacher_fwd_ms']:12.1f} {r['student_fwd_bwd_ms']:16.1f} "
              f"{r['allreduce_ms']:11.2f}")


if __name__ == "__main__":
    main()
