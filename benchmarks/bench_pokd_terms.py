"""Which term of PoKD (eq. 8) costs accuracy: the distillation stage retrained from finished experiment cells.

For each cell directory of an ``esc2c experiment`` (its config and its teacher / prune stages), train the
pruned M_Ori for the cell's ``epochs_prune`` at the student learning rate with each loss variant and print the
test-fold accuracy (and the held-out selection accuracy); then the mean over cells and the paired differences
to the first variant with 95 % t intervals. Variants:

  ce_aux        the M_Pru fine-tune (CE on logits and aux heads)
  kd            Hinton KD on the logits (no aux terms)
  pokd          eq. 8 as written (aux weight 1, gradients through the attention)
  pokd-detach   the fused teacher target a constant (no gradient through lambda)
  pokd-aux0.25  aux terms weighted 0.25
  pokd-aux0     no aux terms (KD on the logits; the aux heads are not trained)
  <variant>-cos the same with 1 epoch of warm-up and a cosine decay of the learning rate to 0

Usage:
  python benchmarks/bench_pokd_terms.py runs/exp_us8k/cells/seed0-fold1 [more cells] [--variants a,b] [--threads N]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from esc2c.compress import pipeline  # noqa: E402
from esc2c.compress.config import CompressConfig  # noqa: E402
from esc2c.compress.stages import load_model  # noqa: E402
from esc2c.compress.train import TrainConfig, evaluate, train  # noqa: E402
from esc2c.experiment import grid, stats  # noqa: E402

VARIANTS = {
    "ce_aux": ("ce_aux", {}),
    "kd": ("kd", {}),
    "pokd": ("pokd", {}),
    "pokd-detach": ("pokd", {"attention_grad": False}),
    "pokd-aux0.25": ("pokd", {"aux_weight": 0.25}),
    "pokd-aux0": ("pokd", {"aux_weight": 0.0}),
}
# the same losses with a warm-up + cosine learning-rate schedule (1 epoch warm-up, decaying to 0)
VARIANTS.update({f"{k}-cos": v for k, v in list(VARIANTS.items())})


def run_cell(cell: Path, variants: list[str], threads: int) -> dict:
    # the cell's config, as the experiment derives it (the cell need only have its teacher and prune stages)
    cfg = grid.cell_config(CompressConfig(**grid.read_grid(cell.parent.parent)).validate(), grid.Cell.parse(cell.name))
    torch.set_num_threads(threads)
    tr, sel, va, _ = pipeline.load_data(cfg, lambda s: None)
    teacher, _ = load_model(cell / "stages" / "teacher" / "model.pt")
    out = {}
    for name in variants:
        loss, opts = VARIANTS[name]
        torch.manual_seed(cfg.seed)
        m, _ = load_model(cell / "stages" / "prune" / "model.pt")
        tc = TrainConfig(epochs=cfg.epochs_prune, batch_size=cfg.batch_size, lr=cfg.lr * cfg.student_lr_factor,
                         weight_decay=cfg.weight_decay, T=cfg.temperature, seed=cfg.seed, device="cpu",
                         progress=False, **({"schedule": "cosine", "warmup_epochs": 1.0} if name.endswith("-cos")
                                            else {}))
        t0 = time.time()
        curve = []                               # test accuracy after every epoch (analysis only: the pipeline
                                                 # never looks at the test fold before the end)

        def score(epoch, row, model=m):
            curve.append(100 * evaluate(model, va, torch.device("cpu"))["acc"])
        res = train(m, tr, sel, loss, teacher=teacher if loss != "ce_aux" else None, cfg=tc,
                    loss_options=opts, on_epoch_end=score)
        acc = evaluate(res.model, va, torch.device("cpu"))["acc"]
        out[name] = {"test": 100 * acc, "select": 100 * res.best_val_acc, "epoch": res.best_epoch,
                     "final": curve[-1], "last5": sum(curve[-5:]) / len(curve[-5:]), "curve": curve,
                     "seconds": time.time() - t0}
        print(f"{cell.name:14s} {name:14s} test {100 * acc:6.2f} (holdout-selected epoch {res.best_epoch:2d}, "
              f"select {100 * res.best_val_acc:6.2f})  final epoch {curve[-1]:6.2f}  mean of the last 5 "
              f"{out[name]['last5']:6.2f}  best any epoch {max(curve):6.2f}  {time.time() - t0:5.0f} s", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cells", nargs="+", type=Path)
    ap.add_argument("--variants", default="ce_aux,kd,pokd,pokd-detach,pokd-aux0.25")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = ap.parse_args()
    variants = [v for v in args.variants.split(",") if v]
    bad = [v for v in variants if v not in VARIANTS]
    if bad:
        sys.exit(f"bench_pokd_terms: unknown variant(s) {bad} (choose {', '.join(VARIANTS)})")
    results = {c.name: run_cell(c, variants, args.threads) for c in args.cells}
    for key, what in (("test", "holdout-selected epoch"), ("final", "final epoch"), ("last5", "mean of the last 5 epochs")):
        print(f"\ntest accuracy, {what}, mean over {len(results)} cell(s):")
        for v in variants:
            vals = {c: r[v][key] for c, r in results.items()}
            print(f"  {v:14s} {sum(vals.values()) / len(vals):6.2f}")
        base = variants[0]
        if len(results) >= 2:
            print(f"  paired differences to {base} (95 % t interval):")
            for v in variants[1:]:
                d = stats.paired({c: r[v][key] for c, r in results.items()},
                                 {c: r[base][key] for c, r in results.items()})
                lo, hi = d["ci"] if d["ci"] else (float("nan"), float("nan"))
                print(f"    {v:14s} {d['mean']:+6.2f}  [{lo:+6.2f}, {hi:+6.2f}]")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
