"""The ``esc2c compress`` report: report.json (every figure) and report.md with three plots.

Plots: accuracy per stage (``acc_stages.png``), accuracy against prune ratio before fine-tuning
(``acc_vs_ratio.png``, the paper's Fig. 5) and per-layer widths before/after CUP (``widths.png``, Fig. 6).
"""
from __future__ import annotations

import json
import platform
from pathlib import Path

import torch

from esc2c.compress.cup import plot_accuracy_vs_ratio, plot_widths
from esc2c.fsutil import atomic_path, atomic_write_text
from esc2c.quant import debug_report

ROWS = (  # (report key, stage, description)
    ("M_Ori", "teacher", "teacher, FP32"),
    ("M_Pru", "finetune", "CUP-pruned, fine-tuned with CE, FP32"),
    ("M_PoKD", "pokd", "pruned, PoKD from M_Ori, FP32"),
    ("KD", "kd", "pruned, vanilla KD (Hinton) from M_Ori, FP32"),
    ("FitNet", "fitnet", "pruned, FitNet hint from M_Ori, FP32"),
    ("MHKD", "mhkd", "pruned, MHKD (aux head j from teacher head j) from M_Ori, FP32"),
    ("ALP-KD", "alpkd", "pruned, ALP-KD (attention over all teacher heads) from M_Ori, FP32"),
    ("M_OriQ", "qat_ta", "teacher assistant: INT8 QAT of M_Ori, PoKD from M_Ori"),
    ("M_Qua", "qat_ce", "INT8 QAT of M_PoKD, CE only (no distillation)"),
    ("DirectKD", "directkd", "INT8 QAT of M_PoKD, PoKD from M_Ori"),
    ("M_QaKD", "qakd", "INT8 QAT of M_PoKD, PoKD from M_OriQ (deployed)"),
)


def build_report(cfg, stage_metrics: dict, ptq_acc: float, deployed: dict, spec, class_names, n_train: int,
                 n_val: int, wall_s: float) -> dict:
    ori_params = stage_metrics["teacher"]["params"]
    rows = []
    for key, stage, desc in ROWS:
        m = stage_metrics.get(stage)
        if m is None:
            continue
        row = {"model": key, "stage": stage, "description": desc, "val_acc": m["val_acc"], "params": m["params"],
               "compression": 1.0 - m["params"] / ori_params, "int8": "int_val_acc" in m}
        if "int_val_acc" in m:
            row["int_val_acc"] = m["int_val_acc"]
            row["int8_params"] = m["int8_params"]
            row["int8_bytes"] = m["int8_bytes"]
        rows.append(row)
        if key == "M_PoKD":
            rows.append({"model": "M_Qua (PTQ)", "stage": "pokd", "description":
                         "M_PoKD INT8, calibrated only (no training)", "val_acc": ptq_acc, "params": m["params"],
                         "compression": 1.0 - m["params"] / ori_params, "int8": True})
    prune = stage_metrics["prune"]
    return {
        "config": cfg.to_dict(),
        "feature_spec": spec.to_dict(),
        "class_names": list(class_names),
        "data": {"train_clips": n_train, "val_clips": n_val},
        "table": rows,
        "prune": {k: prune[k] for k in ("ratio", "threshold", "params_before", "widths", "sweep")},
        "deployed": {**deployed, "compression": 1.0 - deployed["params"] / ori_params,
                     "acc_drop_vs_ori": stage_metrics["teacher"]["val_acc"] - deployed["int_val_acc"]},
        "histories": {s: m.get("history", []) for s, m in stage_metrics.items() if "history" in m},
        "wall_s": wall_s,
        "environment": {"torch": torch.__version__, "python": platform.python_version(),
                        "threads": torch.get_num_threads(), "device": cfg.device},
    }


def format_table(rep: dict) -> str:
    lines = ["| model | accuracy (%) | integer accuracy (%) | params | compression (%) | int8 bytes | description |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for r in rep["table"]:
        ia = f"{100 * r['int_val_acc']:.2f}" if "int_val_acc" in r else ""
        size = r.get("int8_bytes", "")
        lines.append(f"| {r['model']} | {100 * r['val_acc']:.2f} | {ia} | {r['params']} | "
                     f"{100 * r['compression']:.2f} | {size} | {r['description']} |")
    return "\n".join(lines)


def _plot_stages(rep: dict, path: Path) -> None:
    import matplotlib  # lazy: matplotlib only when a plot is written (Agg set before pyplot loads)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after matplotlib.use("Agg")

    names = [r["model"] for r in rep["table"]]
    accs = [100 * r["val_acc"] for r in rep["table"]]
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(names)), 3.5))
    ax.bar(range(len(names)), accs, color=["tab:orange" if r["int8"] else "tab:blue" for r in rep["table"]])
    for i, a in enumerate(accs):
        ax.text(i, a, f"{a:.1f}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title("Accuracy per stage (blue FP32, orange INT8)")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def quant_debug_section(rep: dict, out: Path) -> list[str]:
    """The report.md lines of the per-layer quantization debugger (``rep["quant_debug"]``), after writing its
    plot ``quant_debug.png``; none when the report has no such entry."""
    d = rep.get("quant_debug")
    if not d:
        return []
    debug_report.plot(d, out / "quant_debug.png", title="M_QaKD: quantization error per layer vs M_PoKD")
    return ["## Where the INT8 model loses accuracy (per layer)", "",
            f"M_PoKD (float) vs M_QaKD fake-quant (fq) vs the exact integer program (int) on {d['n_inputs']} "
            "validation clips. SQNR in dB against the float model (inf: identical); max err: largest "
            "|int - float| in the layer's output LSBs and in real units; drop: SQNR the layer itself loses "
            "(lowest SQNR of its inputs minus its own); fq = int: identical int8 elements. The float model is the "
            "one QAT started from, so the figures include what QAT training changed.", "",
            debug_report.format_table(d), "", "![quantization error per layer](quant_debug.png)", ""]


def write_report(rep: dict, out_dir) -> None:
    out = Path(out_dir)
    _plot_stages(rep, out / "acc_stages.png")
    sweep = sorted(rep["prune"]["sweep"], key=lambda r: r["ratio"])
    plot_accuracy_vs_ratio(sweep, out / "acc_vs_ratio.png", title="Accuracy vs prune ratio, no fine-tuning")
    plot_widths(rep["prune"]["widths"], out / "widths.png")
    atomic_write_text(out / "report.json", json.dumps(rep, indent=1) + "\n")
    c, d = rep["config"], rep["deployed"]
    md = [
        f"# esc2c compress: {c['arch']} on {c['dataset']}",
        "",
        f"Train folds {c['train_folds']} ({rep['data']['train_clips']} clips), validation folds {c['val_folds']} "
        f"({rep['data']['val_clips']} clips), {len(rep['class_names'])} classes. Epochs: teacher "
        f"{c['epochs_teacher']}, pruned {c['epochs_prune']}, teacher assistant {c['epochs_qat_ta']}, QaKD "
        f"{c['epochs_qakd']}. Wall time {rep['wall_s']:.0f} s.",
        "",
        format_table(rep),
        "",
        "## Deployed model (model.onnx = M_QaKD, aux heads removed)",
        "",
        f"- integer program accuracy ({d['rounding']} rounding): {100 * d['int_val_acc']:.2f} %; onnxruntime: "
        f"{100 * d['onnx_val_acc']:.2f} %; fake-quant: {100 * d['fake_quant_val_acc']:.2f} %",
        f"- {d['params']} parameters before BN folding, {100 * d['compression']:.2f} % fewer than M_Ori; "
        f"int8 weights + int32 biases: {d['int8_bytes']} bytes",
        f"- accuracy drop vs M_Ori: {100 * d['acc_drop_vs_ori']:.2f} points",
        "",
        f"CUP threshold {rep['prune']['threshold']:.4g} removed {100 * rep['prune']['ratio']:.2f} % of "
        f"{rep['prune']['params_before']} parameters. The accuracy-vs-ratio sweep scores each pruned model "
        "before any fine-tuning, with its BatchNorm statistics re-estimated on training batches.",
        "",
        "![accuracy per stage](acc_stages.png)",
        "![accuracy vs prune ratio](acc_vs_ratio.png)",
        "![per-layer widths](widths.png)",
        "",
        *quant_debug_section(rep, out),
    ]
    atomic_write_text(out / "report.md", "\n".join(md))
