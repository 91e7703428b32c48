"""Teacher accuracy under training recipes, cross-validated over UrbanSound8K folds 1-3 and several seeds.

For every (seed, test fold) cell the teacher (M_Ori, eq. 4 loss) is trained on the other folds with each recipe
(``augment``: time shift, SpecAugment, mixup, label smoothing, warm-up + cosine; ``paper``: plain Adam at a
constant rate), keeping its best epoch on recordings held out of the training folds (or its last, when the recipe's
epoch_selection says so), and scored on the test fold, which neither training nor epoch selection sees. Prints every cell, mean +- std per recipe and each recipe's paired
difference from the first with its 95 % t interval. A recipe is a preset with config fields over it
(``paper+gain_db=6+eq_db=6``).

    .venv/bin/python benchmarks/bench_recipe.py [--seeds 0,1] [--folds 1,2,3] [--test-folds 2] [--epochs 20]
        [-o runs/bench_recipe]

Each finished cell is stored as JSON (and its teacher as a checkpoint) in the output directory and not trained
again.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import yaml

from esc2c.compress.config import load_config
from esc2c.compress.pipeline import load_data
from esc2c.compress.stages import save_model
from esc2c.compress.train import TrainConfig, evaluate, train
from esc2c.experiment.stats import describe, paired, verdict
from esc2c.fsutil import atomic_write_text
from esc2c.models.registry import build_model

ROOT = Path(__file__).resolve().parents[1]


def recipe_fields(recipe: str) -> dict:
    """'augment+gain_db=6+eq_db=6' -> {"preset": "augment", "gain_db": 6, "eq_db": 6}: a preset and config fields
    over it."""
    preset, *sets = recipe.split("+")
    out = {"preset": preset}
    for item in sets:
        key, eq, value = item.partition("=")
        if not eq:
            raise SystemExit(f"recipe {recipe!r}: {item!r} is not FIELD=VALUE")
        out[key] = yaml.safe_load(value)
    return out


def cell(args, recipe: str, seed: int, test_fold: int, model_path: Path) -> dict:
    folds = [f for f in args.folds if f != test_fold]
    cfg = load_config(None, {"dataset": "urbansound8k", "data_dir": args.data_dir, "train_folds": folds,
                             "val_folds": [test_fold], "holdout": args.holdout, "seed": seed,
                             "arch": args.arch, "width": args.width, "threads": args.threads,
                             "features": {"hop_length": args.hop} if args.hop else None, **recipe_fields(recipe)})
    torch.set_num_threads(args.threads)
    tr, sel, te, spec = load_data(cfg, log=lambda s: None)
    torch.manual_seed(seed)
    m = build_model(cfg.arch, len(tr.class_names), cfg.width, tuple(tr.x.shape[1:]), aux=True, dropout=cfg.dropout)
    t0 = time.time()
    tc = TrainConfig(epochs=args.epochs, batch_size=cfg.batch_size, lr=cfg.lr, weight_decay=cfg.weight_decay,
                     seed=seed, progress=False, verbose=False, augment=cfg.augment(spec), schedule=cfg.lr_schedule,
                     warmup_epochs=cfg.warmup_epochs, select=cfg.epoch_selection, ema_decay=cfg.ema_decay)
    res = train(m, tr, sel, "ce_aux", cfg=tc)
    r = {"recipe": recipe, "seed": seed, "test_fold": test_fold, "train_folds": folds,
            "test_acc": evaluate(res.model, te)["acc"], "select_acc": res.best_val_acc,
            "train_acc": res.history[res.best_epoch - 1]["train_acc"], "best_epoch": res.best_epoch,
            "seconds": time.time() - t0, "spec": spec.to_dict(), "augment": cfg.augment(spec).to_dict(),
            "lr_schedule": cfg.lr_schedule}
    save_model(model_path, res.model, metrics=r, spec=spec.to_dict())
    return r


@torch.no_grad()
def soft_target_stats(args, r: dict, model_path: Path) -> dict:
    """What a distillation teacher hands its student: the mean top-1 probability and entropy (nats) of its
    softened outputs (T = 4) on the training clips as they are, and on the same clips augmented as the augment
    recipe does. A teacher whose soft targets on its own training clips are near one-hot teaches little beyond
    the labels."""
    from esc2c.compress.augment import augment_batch
    from esc2c.compress.stages import load_model

    cfg = load_config(None, {"dataset": "urbansound8k", "data_dir": args.data_dir, "train_folds": r["train_folds"],
                             "val_folds": [r["test_fold"]], "holdout": args.holdout, "seed": r["seed"],
                             "preset": "augment", "features": {"hop_length": args.hop} if args.hop else None})
    tr, _, _, _ = load_data(cfg, log=lambda s: None)
    model, _ = load_model(model_path)
    model.eval()
    x = torch.from_numpy(tr.x)
    out = {}
    for name, xs in (("raw", x), ("augmented", augment_batch(x, cfg.augment(), torch.Generator().manual_seed(0))[0])):
        p = torch.cat([torch.softmax(model(xs[i:i + 256]) / 4.0, 1) for i in range(0, len(xs), 256)])
        out[name] = {"top1_prob_T4": float(p.max(1).values.mean()),
                     "entropy_T4": float(-(p * p.clamp_min(1e-12).log()).sum(1).mean())}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data" / "urbansound8k"))
    ap.add_argument("-o", "--output", default=str(ROOT / "runs" / "bench_recipe"))
    ap.add_argument("--recipes", default="paper,augment",
                    help="comma-separated recipes, each a preset with optional config fields over it: "
                         "paper,paper+gain_db=6+eq_db=6")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--folds", default="1,2,3")
    ap.add_argument("--test-folds", default=None,
                    help="only these test folds (default: every fold of --folds); each still trains on the other "
                         "folds of --folds, so test folds can run in separate processes")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--arch", default="vgg11")
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--holdout", type=float, default=0.15)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--soft-targets", action="store_true",
                    help="also print each finished teacher's soft-target sharpness on its training clips")
    ap.add_argument("--hop", type=int, default=None, help="log-mel hop in samples (default: the dataset's, 512)")
    args = ap.parse_args()
    args.folds = [int(f) for f in args.folds.split(",")]
    test_folds = [int(f) for f in args.test_folds.split(",")] if args.test_folds else args.folds
    if not set(test_folds) <= set(args.folds):
        ap.error(f"--test-folds {test_folds} must be among --folds {args.folds}")
    recipes = args.recipes.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for seed in seeds:
        for fold in test_folds:
            for recipe in recipes:
                path = out / f"{recipe}-seed{seed}-fold{fold}-e{args.epochs}-hop{args.hop or 512}.json"
                if path.is_file():
                    r = json.loads(path.read_text())
                else:
                    r = cell(args, recipe, seed, fold, path.with_suffix(".pt"))
                    atomic_write_text(path, json.dumps(r, indent=1) + "\n")
                rows.append(r)
                print(f"{recipe:<6} seed {seed} test fold {fold}: test {100 * r['test_acc']:.2f} %  "
                      f"(select {100 * r['select_acc']:.2f}, train {100 * r['train_acc']:.2f}, "
                      f"best epoch {r['best_epoch']}, {r['seconds']:.0f} s)", flush=True)
                if args.soft_targets:
                    st = soft_target_stats(args, r, path.with_suffix(".pt"))
                    print("       soft targets at T=4 on its training clips: " + ", ".join(
                        f"{k}: top-1 p {v['top1_prob_T4']:.3f}, entropy {v['entropy_T4']:.3f}"
                        for k, v in st.items()), flush=True)
    print()
    acc = {rc: {(r["seed"], r["test_fold"]): 100 * r["test_acc"] for r in rows if r["recipe"] == rc}
           for rc in recipes}
    for rc in recipes:
        d = describe(acc[rc].values())
        print(f"{rc:<6} test accuracy {d['mean']:.2f} +- {d['std'] or 0:.2f} % over {d['n']} cells")
    for rc in recipes[1:]:
        d = paired(acc[rc], acc[recipes[0]])
        lo, hi = d["ci"] if d["ci"] else (float("nan"), float("nan"))
        print(f"{rc} - {recipes[0]}: {d['mean']:+.2f} points, 95 % interval [{lo:+.2f}, {hi:+.2f}] "
              f"over {d['n']} paired cells ({verdict(d)})")

if __name__ == "__main__":
    main()
