"""Training-step speed of the CPU-sized teacher on this machine: threads, memory format, torch.compile.

One training step is what the loop does per batch: augmentation, the student's forward with aux heads, the
eq. 4 loss, backward, Adam. Prints samples per second for each variant, so the defaults can follow the figures.

    .venv/bin/python benchmarks/bench_train_speed.py [--arch vgg11 --width 0.25 --shape 40,124 --steps 6]
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from esc2c.compress.augment import AugmentConfig, augment_batch, targets
from esc2c.models.registry import build_model


def step_fn(model, opt, aug: AugmentConfig | None, n_cls: int, channels_last: bool):
    gen = torch.Generator().manual_seed(0)

    def step(x, y):
        mix = None
        if aug is not None:
            x, mix = augment_batch(x, aug, gen)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        t = targets(y, n_cls, aug, mix) if aug is not None else y
        out = model.forward_all(x)
        loss = F.cross_entropy(out.logits, t) + sum(F.cross_entropy(a, t) for a in out.aux_logits)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def measure(args, threads: int, channels_last: bool, compiled: bool, aug: AugmentConfig | None) -> float:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    shape = (1, *args.shape)
    model = build_model(args.arch, 10, args.width, shape, aux=True)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if compiled:
        model.forward_all = torch.compile(model.forward_all)
    opt = torch.optim.Adam(model.parameters(), 1e-3, weight_decay=5e-4)
    step = step_fn(model, opt, aug, 10, channels_last)
    x, y = torch.randn(args.batch, *shape), torch.randint(0, 10, (args.batch,))
    for _ in range(2):                        # warm-up (and compilation)
        step(x, y)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step(x, y)
    return args.steps * args.batch / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="vgg11")
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--shape", default="40,124", help="n_mels,frames")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--compile", action="store_true", help="also time torch.compile (slow to compile)")
    args = ap.parse_args()
    args.shape = tuple(int(v) for v in args.shape.split(","))
    aug = AugmentConfig(time_shift=0.25, freq_masks=2, freq_mask=0.15, time_masks=2, time_mask=0.1,
                        mixup_alpha=0.2, label_smoothing=0.1)
    print(f"{args.arch} width {args.width}, input 1x{args.shape[0]}x{args.shape[1]}, batch {args.batch}; "
          f"samples/s (higher is better)")
    variants = [(t, cl, False, a) for t in (1, 2) for cl in (False, True) for a in (None, aug)]
    if args.compile:
        variants += [(2, cl, True, aug) for cl in (False, True)]
    for threads, cl, comp, a in variants:
        sps = measure(args, threads, cl, comp, a)
        print(f"threads {threads}  {'channels_last' if cl else 'contiguous   '}  "
              f"{'compiled' if comp else 'eager   '}  {'augmented' if a else 'plain    '}  {sps:8.1f}", flush=True)


if __name__ == "__main__":
    main()
