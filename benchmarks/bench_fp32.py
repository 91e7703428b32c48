"""FP32 compression benchmark on UrbanSound8K: teacher (M_Ori) -> CUP 97 % (M_Pru) -> PoKD and the KD baselines.

Trains on the shared set's folds 1-2 (whole recordings holding ~15 % of their clips are held out for best-epoch
selection) and tests on fold 3, then prints a Table-1-style table (accuracy on fold 3, deployed parameters and MACs), the per-layer
widths before/after pruning (Fig. 6) and the wall time. Every student starts from the same pruned weights and
trains for the same epochs; M_Pru is that start fine-tuned with CE alone. Stages are kept under --run-dir, so
an interrupted run resumes where it stopped.

    .venv/bin/python benchmarks/bench_fp32.py                      # CPU-sized default (~15-20 min, 1 thread)
    .venv/bin/python benchmarks/bench_fp32.py --teacher-epochs 2 --student-epochs 1    # smoke run
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from esc2c.compress.cup import plot_accuracy_vs_ratio, plot_widths, prune_to_ratio, ratio_sweep  # noqa: E402
from esc2c.compress.stages import Stage, StageResult, StageRunner  # noqa: E402
from esc2c.compress.train import TrainConfig, evaluate, train  # noqa: E402
from esc2c.data.loader import load_features  # noqa: E402
from esc2c.features import FeatureSpec  # noqa: E402
from esc2c.models.counting import count_macs, count_params  # noqa: E402
from esc2c.models.registry import build_model  # noqa: E402

KD_METHODS = [("M_PoKD", "pokd"), ("vanilla KD", "kd"), ("FitNet", "fitnet"), ("MHKD", "mhkd"),
              ("ALP-KD", "alpkd")]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data" / "urbansound8k"))
    ap.add_argument("--arch", default="vgg11", choices=["vgg11", "resnet18", "small"])
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--n-mels", type=int, default=40)
    ap.add_argument("--hop", type=int, default=1024, help="STFT hop in samples (n_fft = win = 1024)")
    ap.add_argument("--teacher-epochs", type=int, default=20)
    ap.add_argument("--student-epochs", type=int, default=30)
    ap.add_argument("--sweep", default="0.5,0.8,0.9,0.95,0.97",
                    help="prune ratios for the accuracy-vs-ratio curve (Fig. 5); empty to skip")
    ap.add_argument("--sweep-epochs", type=int, default=3, help="CE fine-tuning epochs per sweep point")
    ap.add_argument("--prune-ratio", type=float, default=0.97)
    ap.add_argument("--T", type=float, default=4.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1 is fastest on a loaded shared machine)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--run-dir", default=str(ROOT / "runs" / "bench_fp32"))
    ap.add_argument("--progress", action="store_true", help="show per-batch progress bars")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    t_start = time.time()

    spec = FeatureSpec(n_mels=args.n_mels, hop_length=args.hop)
    feats = load_features("urbansound8k", args.data_dir, [1, 2, 3], spec, progress=args.progress)
    trainval, test = feats.subset([1, 2]), feats.subset([3])
    mean, std = trainval.stats()
    spec = spec.with_stats(mean, std)
    trainval, test = trainval.normalised(spec), test.normalised(spec)
    # hold out whole recordings (the fsID that starts every UrbanSound8K file name): slices of one recording
    # are near-duplicates, so a clip-level split would make validation accuracy meaningless
    rec = np.array([Path(f).name.split("-")[0] for f in trainval.files])
    recs = np.random.default_rng(args.seed).permutation(np.unique(rec))
    held, n_held = set(), 0
    for r in recs:
        if n_held >= 0.15 * len(trainval):
            break
        held.add(r)
        n_held += int((rec == r).sum())
    is_val = np.isin(rec, sorted(held))
    val = (trainval.x[is_val], trainval.y[is_val])
    tr = (trainval.x[~is_val], trainval.y[~is_val])
    n_val = int(is_val.sum())
    n_classes = len(feats.class_names)
    in_shape = tuple(feats.x.shape[1:])
    t_data = time.time() - t_start
    print(f"data: {len(tr[1])} train / {n_val} val clips (folds 1-2), {len(test)} test clips (fold 3), "
          f"input {in_shape}, {n_classes} classes, features in {t_data:.0f} s", flush=True)

    tcfg = lambda epochs: TrainConfig(epochs=epochs, T=args.T, seed=args.seed, device=args.device,  # noqa: E731
                                      progress=args.progress)
    config = {k: v for k, v in vars(args).items() if k not in ("progress", "threads", "run_dir")}
    out_dir = Path(args.run_dir)
    runner = StageRunner(args.run_dir, config, spec.to_dict(), device=args.device)
    times = {}

    def timed(fn):
        def run(ctx):
            t0 = time.time()
            out = fn(ctx)
            times[ctx.name] = time.time() - t0
            return out
        return run

    def teacher_stage(ctx):
        torch.manual_seed(args.seed)
        m = build_model(args.arch, n_classes, args.width, in_shape)
        res = train(m, tr, val, "ce_aux", cfg=tcfg(args.teacher_epochs), checkpoint=ctx.train_checkpoint,
                    checkpoint_extra=ctx.checkpoint_extra())
        return res.model, res.metrics

    def prune_stage(ctx):
        res = prune_to_ratio(ctx.results["teacher"].model.cpu(), args.prune_ratio)
        return res.model, res.summary()

    def student_stage(loss):
        def fn(ctx):
            student = copy.deepcopy(ctx.results["prune"].model)
            teacher = ctx.results["teacher"].model
            res = train(student, tr, val, loss, teacher=None if loss == "ce" else teacher,
                        cfg=tcfg(args.student_epochs), checkpoint=ctx.train_checkpoint,
                        checkpoint_extra=ctx.checkpoint_extra())
            return res.model, res.metrics
        return fn

    stages = [Stage("teacher", timed(teacher_stage), {"epochs": args.teacher_epochs}),
              Stage("prune", timed(prune_stage), {"ratio": args.prune_ratio}),
              Stage("pru_ce", timed(student_stage("ce")), {"epochs": args.student_epochs})]
    stages += [Stage(loss, timed(student_stage(loss)), {"epochs": args.student_epochs}) for _, loss in KD_METHODS]
    results = runner.run(stages)

    rows = [("M_Ori", "teacher"), ("M_Pru (no FT)", "prune"), ("M_Pru (CE FT)", "pru_ce")] + \
        [(label, loss) for label, loss in KD_METHODS]
    ori_acc = None
    lines = [f"{'model':16s} {'test acc %':>10s} {'vs M_Ori':>9s} {'params':>9s} {'MACs':>12s} {'val acc %':>9s} "
             f"{'time s':>7s}"]
    table = []
    for label, stage in rows:
        m = results[stage].model.to(args.device).eval()
        acc = evaluate(m, test, args.device)["acc"] * 100
        ori_acc = acc if ori_acc is None else ori_acc
        m = m.cpu()
        params, macs = count_params(m), count_macs(m, in_shape)
        val_acc = results[stage].metrics.get("best_val_acc")
        table.append({"model": label, "test_acc": acc, "params": params, "macs": macs, "val_acc": val_acc,
                      "time_s": times.get(stage)})
        lines.append(f"{label:16s} {acc:10.2f} {acc - ori_acc:+9.2f} {params:9d} {macs:12d} "
                     f"{'' if val_acc is None else f'{100 * val_acc:9.2f}':>9s} "
                     f"{'' if stage not in times else f'{times[stage]:7.0f}':>7s}")
    summary = results["prune"].metrics
    print()
    print(f"Table 1 (FP32), UrbanSound8K folds 1-2 -> fold 3, {args.arch} width {args.width}, "
          f"teacher {args.teacher_epochs} ep, students {args.student_epochs} ep, T={args.T}, "
          f"CUP ratio {summary['ratio']:.4f} (t={summary['threshold']:.4g})")
    print("\n".join(lines))
    print("\nPer-layer widths, M_Ori -> M_Pru (Fig. 6):")
    print("  " + ", ".join(f"{n}: {b}->{a}" for n, b, a in summary["widths"]))
    sweep = []
    if args.sweep.strip():
        sweep_file = out_dir / "fig5_sweep.json"
        ratios = [float(r) for r in args.sweep.split(",")]
        if sweep_file.is_file() and json.loads(sweep_file.read_text())["ratios"] == ratios:
            sweep = json.loads(sweep_file.read_text())["rows"]
        else:
            t0 = time.time()

            def fine_tuned_test_acc(pm):
                res = train(pm, tr, val, "ce", cfg=tcfg(args.sweep_epochs))
                return evaluate(res.model, test, args.device)["acc"]
            sweep = ratio_sweep(results["teacher"].model.cpu(), ratios, fine_tuned_test_acc)
            times["sweep"] = time.time() - t0
            sweep_file.write_text(json.dumps({"ratios": ratios, "rows": sweep}, indent=1))
        plot_accuracy_vs_ratio(sweep, out_dir / "fig5_accuracy_vs_ratio.png")
        print(f"\nAccuracy vs prune ratio (Fig. 5; CUP then {args.sweep_epochs} CE epochs, test fold 3):")
        for r in sweep:
            print(f"  ratio {100 * r['ratio']:6.2f} %  params {r['params']:8d}  acc {100 * r['accuracy']:6.2f} %")
    wall = time.time() - t_start
    print(f"\nwall time {wall:.0f} s ({wall / 60:.1f} min; stages run now: "
          + ", ".join(f"{k} {v:.0f} s" for k, v in times.items()) + ")")
    plot_widths([tuple(w) for w in summary["widths"]], out_dir / "fig6_widths.png")
    (out_dir / "table1.json").write_text(json.dumps({"config": config, "rows": table, "sweep": sweep,
                                                     "wall_s": wall}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
