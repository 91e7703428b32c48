"""Which term or setting of distillation costs accuracy: the FP32 distillation stage retrained from finished
experiment cells.

For each cell directory of an ``esc2c experiment`` (its config and its teacher / prune stages), train the
pruned M_Ori for the cell's ``epochs_prune`` at the student learning rate with each loss variant, under the
cell's own training recipe (augmentation, learning-rate schedule, epoch selection, as the pipeline trains the
stage), and print the test-fold accuracy (and the held-out selection accuracy); then the mean over cells and
the paired differences to the first variant with 95 % t intervals. Variants:

  ce_aux        the M_Pru fine-tune (CE on logits and aux heads)
  kd            Hinton KD on the logits (no aux terms)
  pokd          eq. 8 as written (aux weight 1, gradients through the attention)
  pokd-detach   the fused teacher target a constant (no gradient through lambda)
  pokd-aux0.25  aux terms weighted 0.25
  pokd-aux0     no aux terms (KD on the logits; the aux heads are not trained)
  <variant>-cos the same with 1 epoch of warm-up and a cosine decay of the learning rate to 0

and any of them with settings changed, joined by '+': ``pokd+mixup=1`` (mixup with Beta(1, 1) on the
distillation batches; the teacher scores the mixed clips), ``kd+T=2`` (temperature), ``pokd+epochs=30``,
``ce_aux+lr=2`` (the student learning-rate factor), ``kd+oof=2`` (cross-fitted teachers,
esc2c.compress.crossfit: the training recordings split into 2 parts, a teacher of the cell's architecture,
epochs and recipe trained on each part's complement, every clip taught by the teacher that never saw it;
trained once per cell and K, and their out-of-fold accuracy printed).

``--prune-ratio R`` prunes each cell's teacher afresh to R (CUP, the cell's kept-width rule) instead of loading
the cell's prune stage, e.g. to study 97 %-pruned students on cells that pruned to a parameter budget.

Usage:
  python benchmarks/bench_pokd_terms.py runs/exp_us8k/cells/seed0-fold1 [more cells] [--variants a,b]
      [--prune-ratio 0.97] [--threads N] [--json FILE]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from esc2c.compress import budget, cup, pipeline  # noqa: E402
from esc2c.compress.config import CompressConfig  # noqa: E402
from esc2c.compress.crossfit import CrossFitTeacher, recording_parts  # noqa: E402
from esc2c.compress.stages import load_model  # noqa: E402
from esc2c.compress.train import TrainConfig, evaluate, teacher_outputs, train  # noqa: E402
from esc2c.data.holdout import take_rows  # noqa: E402
from esc2c.models.registry import build_from_config, build_model, model_config  # noqa: E402
from esc2c.experiment import grid, stats  # noqa: E402

BASE = {
    "ce_aux": ("ce_aux", {}),
    "kd": ("kd", {}),
    "pokd": ("pokd", {}),
    "pokd-detach": ("pokd", {"attention_grad": False}),
    "pokd-aux0.25": ("pokd", {"aux_weight": 0.25}),
    "pokd-aux0": ("pokd", {"aux_weight": 0.0}),
}
# the same losses with a warm-up + cosine learning-rate schedule (1 epoch warm-up, decaying to 0)
BASE.update({f"{k}-cos": v for k, v in list(BASE.items())})
SETTINGS = {"mixup": float, "T": float, "epochs": int, "lr": float, "oof": int}   # what '+key=value' may change


def parse_variant(name: str) -> tuple[str, dict, dict]:
    """'pokd-cos+mixup=1' -> (base name, loss options, settings); SystemExit names what is wrong."""
    base, *mods = name.split("+")
    if base not in BASE:
        sys.exit(f"bench_pokd_terms: unknown variant {base!r} in {name!r} (choose {', '.join(BASE)})")
    settings = {}
    for m in mods:
        key, _, value = m.partition("=")
        if key not in SETTINGS or not value:
            sys.exit(f"bench_pokd_terms: bad setting {m!r} in {name!r} (use key=value, key one of "
                     f"{', '.join(SETTINGS)})")
        try:
            settings[key] = SETTINGS[key](value)
        except ValueError:
            sys.exit(f"bench_pokd_terms: setting {m!r} in {name!r}: {value!r} is not a {SETTINGS[key].__name__}")
    return base, BASE[base][1], settings


def recipe_config(cfg: CompressConfig, spec, epochs: int, lr: float, **changes) -> TrainConfig:
    """A TrainConfig under the cell's recipe (augmentation, schedule, epoch selection) as the pipeline builds
    its stages'; ``changes`` replace fields."""
    tc = TrainConfig(epochs=epochs, batch_size=cfg.batch_size, lr=lr, weight_decay=cfg.weight_decay,
                     T=cfg.temperature, seed=cfg.seed, device="cpu", progress=False, augment=cfg.augment(spec),
                     schedule=cfg.lr_schedule, warmup_epochs=cfg.warmup_epochs, select=cfg.epoch_selection)
    return dataclasses.replace(tc, **changes)


def train_config(cfg: CompressConfig, spec, base: str, settings: dict) -> TrainConfig:
    """The stage's TrainConfig as the pipeline builds it for the pruned students, with the variant's changes."""
    changes = {"T": settings.get("T", cfg.temperature)}
    if "mixup" in settings:
        changes["augment"] = dataclasses.replace(cfg.augment(spec), mixup_alpha=settings["mixup"])
    if base.endswith("-cos"):
        changes.update(schedule="cosine", warmup_epochs=1.0)
    return recipe_config(cfg, spec, settings.get("epochs", cfg.epochs_prune),
                         cfg.lr * settings.get("lr", cfg.student_lr_factor), **changes)


def teacher_stats(teacher, sets: dict, T: float) -> dict:
    """How much the teacher's soft targets say beyond the label, per data set: its accuracy, the mean
    probability it gives the labelled class at temperature T, and the mean entropy (nats) of those targets.
    Targets near one-hot on the training clips but spread on unseen ones mean it memorised its training set,
    and distillation on that set passes on little more than the labels."""
    out = {}
    teacher.eval()
    for name, d in sets.items():
        logits = teacher_outputs(teacher, torch.as_tensor(d.x), torch.device("cpu"), features=False).logits
        y = torch.as_tensor(d.y).long()
        p = torch.softmax(logits / T, dim=1)
        out[name] = {"acc": 100 * float((logits.argmax(1) == y).float().mean()),
                     "p_label": float(p[torch.arange(len(y)), y].mean()),
                     "entropy": float(-(p * p.clamp_min(1e-12).log()).sum(1).mean())}
    return out


def crossfit_teacher(cfg: CompressConfig, spec, tr, sel, k: int, log) -> CrossFitTeacher:
    """K teachers as the pipeline trains M_Ori (architecture, epochs, recipe), each on the training recordings
    outside one part; every training row is taught by the teacher of its own part."""
    part = recording_parts(list(tr.files), cfg.dataset, k, cfg.seed)
    teachers, correct = [], 0
    for j in range(k):
        rest, held = take_rows(tr, part != j), take_rows(tr, part == j)
        torch.manual_seed(cfg.seed * 1000 + j)
        m = build_model(cfg.arch, len(tr.class_names), cfg.width, tuple(tr.x.shape[1:]), aux=True)
        tc = recipe_config(cfg, spec, cfg.epochs_teacher, cfg.lr, seed=cfg.seed + j, verbose=False)
        t0 = time.time()
        res = train(m, rest, sel, "ce_aux", cfg=tc)
        acc = evaluate(res.model, held, torch.device("cpu"))["acc"]
        correct += acc * len(held.y)
        log(f"  cross-fit teacher {j + 1}/{k}: {len(rest.y)} clips, on its held-out part ({len(held.y)} clips) "
            f"{100 * acc:.1f} % ({time.time() - t0:.0f} s)")
        teachers.append(res.model.eval())
    log(f"  out-of-fold accuracy of the cross-fitted teachers on the training clips: "
        f"{100 * correct / len(tr.y):.1f} %")
    return CrossFitTeacher(teachers, part)


def run_cell(cell: Path, variants: list[str], threads: int, prune_ratio: float | None) -> dict:
    # the cell's config, as the experiment derives it (the cell need only have its teacher and prune stages)
    cfg = grid.cell_config(CompressConfig(**grid.read_grid(cell.parent.parent)).validate(), grid.Cell.parse(cell.name))
    torch.set_num_threads(threads)
    tr, sel, va, spec = pipeline.load_data(cfg, lambda s: None)
    teacher, _ = load_model(cell / "stages" / "teacher" / "model.pt")
    ts = {}
    for T in sorted({1.0, float(cfg.temperature)}):
        ts[f"T={T:g}"] = teacher_stats(teacher, {"train": tr, "holdout": sel, "test": va}, T)
        print(f"{cell.name:14s} teacher at T = {T:g}: " + "; ".join(
            f"{k} acc {v['acc']:.1f} %, p(label) {v['p_label']:.3f}, entropy {v['entropy']:.3f}"
            for k, v in ts[f"T={T:g}"].items()), flush=True)
    if prune_ratio is not None:
        widths = budget.widths_for(cfg.board, cfg.channel_multiple, cfg.min_channels)
        pruned = cup.prune_to_ratio(teacher, prune_ratio, widths=widths)
        start = pruned.model.state_dict()
        print(f"{cell.name:14s} pruned to {pruned.ratio:.4f} ({pruned.params_after} parameters)", flush=True)
    out = {"_teacher": ts}
    crossfit = {}
    for name in variants:
        base, opts, settings = parse_variant(name)
        loss = BASE[base][0]
        torch.manual_seed(cfg.seed)
        if prune_ratio is not None:               # a fresh copy of the pruned model, as the pipeline's students
            m = build_from_config(model_config(pruned.model))
            m.load_state_dict(start)
        else:
            m, _ = load_model(cell / "stages" / "prune" / "model.pt")
        tc = train_config(cfg, spec, base, settings)
        teach = teacher
        if "oof" in settings:
            k = settings["oof"]
            if k not in crossfit:
                crossfit[k] = crossfit_teacher(cfg, spec, tr, sel, k,
                                               lambda s: print(f"{cell.name:14s}{s}", flush=True))
            teach = crossfit[k]
        t0 = time.time()
        curve = []                               # test accuracy after every epoch (analysis only: the pipeline
                                                 # never looks at the test fold before the end)

        def score(epoch, row, model=m):
            curve.append(100 * evaluate(model, va, torch.device("cpu"))["acc"])
        res = train(m, tr, sel, loss, teacher=teach if loss != "ce_aux" else None, cfg=tc,
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
    ap.add_argument("--prune-ratio", type=float, default=None,
                    help="prune each cell's teacher afresh to this ratio instead of loading its prune stage")
    ap.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = ap.parse_args()
    variants = [v for v in args.variants.split(",") if v]
    for v in variants:
        parse_variant(v)                         # a bad name stops before anything trains
    results = {c.name: run_cell(c, variants, args.threads, args.prune_ratio) for c in args.cells}
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
