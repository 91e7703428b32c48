"""The quantization debugger's table (Markdown / plain text) and plot (SQNR and agreement per layer)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from esc2c.fsutil import atomic_path, atomic_write_text
from esc2c.quant.debug import PATH_NAMES, QuantDebug


def _num(v) -> float | None:
    return None if v is None else float(v)  # also "inf" / "-inf" from a report.json


def _db(v) -> str:
    v = _num(v)
    if v is None:
        return ""
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:.1f}".replace("-0.0", "0.0") if abs(v) < 0.05 else f"{v:.1f}"


def _pct(v) -> str:
    return "" if v is None else f"{100 * float(v):.2f}"


def _f(v, fmt=".3g") -> str:
    return "" if v is None else format(float(v), fmt)


def columns(d: dict) -> list:
    """(header, row key, formatter) of the table for a QuantDebug dict (``QuantDebug.to_dict()``)."""
    paths, cols = d["paths"], []
    if d["has_float"]:
        for p in paths:
            cols.append((f"SQNR {p} (dB)", f"{p}_sqnr_db", _db))
        cols += [("max err int (LSB)", "int_max_err_lsb", lambda v: _f(v, ".1f")),
                 ("max err int (real)", "int_max_err", _f)]
        if "c" in paths:
            cols.append(("max err C (LSB)", "c_max_err_lsb", lambda v: _f(v, ".1f")))
        cols.append(("drop (dB)", "drop_db", _db))
    for p in paths:
        if p != "int":
            cols.append((f"{p} = int (%)", f"{p}_agree", _pct))
            cols.append((f"{p} max diff (LSB)", f"{p}_max_code_diff", lambda v: "" if v is None else str(v)))
    return cols


def format_table(d: dict) -> str:
    """Markdown table, one row per layer, then the logits summary and the worst layer."""
    cols = columns(d)
    head = ["layer", "op", "shape", "scale"] + [c[0] for c in cols]
    lines = ["| " + " | ".join(head) + " |", "|---|---|---|---:|" + "---:|" * len(cols)]
    for r in d["layers"]:
        cells = [r["name"] + (" **(worst)**" if r["name"] == d.get("worst_layer") else ""), r["op"],
                 "x".join(str(s) for s in r["shape"]), f"{r['scale']:.4g}"]
        cells += [fmt(r.get(key)) for _, key, fmt in cols]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(summary_line(d))
    return "\n".join(lines)


def summary_line(d: dict) -> str:
    lg = d["logits"]
    parts = [f"{d['n_inputs']} inputs"]
    for p in d["paths"]:
        if f"{p}_top1_agree" in lg:
            parts.append(f"top-1 {PATH_NAMES[p]} = float {_pct(lg[f'{p}_top1_agree'])} %")
    for p in ["float"] + list(d["paths"]):
        if f"{p}_acc" in lg:
            parts.append(f"accuracy {PATH_NAMES.get(p, p)} {_pct(lg[f'{p}_acc'])} %")
    if d.get("worst_layer"):
        parts.append(f"largest SQNR drop: {d['worst_layer']}")
    return "; ".join(parts) + "."


def plot(d: dict, path: str | Path, title: str = "Quantization error per layer") -> None:
    """Two panels: SQNR of each path against the float model (when there is one) and int8 agreement with the
    integer program, one group of bars per layer; the worst layer's label is red."""
    import matplotlib  # lazy: matplotlib only when a plot is written (Agg set before pyplot loads)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after matplotlib.use("Agg")

    rows = d["layers"]
    names = [r["name"] for r in rows]
    agree_paths = [p for p in d["paths"] if p != "int"]
    panels = (["sqnr"] if d["has_float"] else []) + (["agree"] if agree_paths else [])
    if not panels:
        panels = ["agree"]
    fig, axes = plt.subplots(len(panels), 1, figsize=(max(7, 0.55 * len(names)) + 3, 3.2 * len(panels)),
                             squeeze=False, sharex=True)
    x = np.arange(len(names))
    colours = {"fq": "tab:blue", "int": "tab:orange", "c": "tab:green"}
    for ax, panel in zip(axes[:, 0], panels):
        paths = d["paths"] if panel == "sqnr" else agree_paths
        w = 0.8 / max(1, len(paths))
        for k, p in enumerate(paths):
            if panel == "sqnr":
                vals = [_num(r.get(f"{p}_sqnr_db")) for r in rows]
                finite = [v for v in vals if v is not None and math.isfinite(v)]
                cap = (max(finite) + 10.0) if finite else 60.0
                ys = [np.nan if v is None else (cap if v == math.inf else max(v, -20.0)) for v in vals]
                label = f"{PATH_NAMES[p]} vs float"
            else:
                ys = [np.nan if r.get(f"{p}_agree") is None else 100 * r[f"{p}_agree"] for r in rows]
                label = f"{PATH_NAMES[p]} = integer program"
            ax.bar(x + (k - (len(paths) - 1) / 2) * w, ys, w, label=label, color=colours[p])
        ax.set_ylabel("SQNR (dB)" if panel == "sqnr" else "identical int8 (%)")
        if panel == "agree":
            ax.set_ylim(max(0.0, min([100 * r[f"{p}_agree"] for r in rows for p in agree_paths
                                      if r.get(f"{p}_agree") is not None] + [100.0]) - 5), 100.5)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax = axes[-1, 0]
    ax.set_xticks(x, names, rotation=45, ha="right", fontsize=8)
    for lbl in ax.get_xticklabels():
        if lbl.get_text() == d.get("worst_layer"):
            lbl.set_color("red")
    axes[0, 0].set_title(title)
    fig.tight_layout()
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def write(qd: QuantDebug | dict, json_path: str | Path | None = None, plot_path: str | Path | None = None,
          title: str = "Quantization error per layer") -> dict:
    """Write the JSON and/or the plot of a comparison; returns its dict."""
    d = qd.to_dict() if isinstance(qd, QuantDebug) else qd
    if plot_path is not None:
        plot(d, plot_path, title)
    if json_path is not None:
        atomic_write_text(Path(json_path), json.dumps(d, indent=1) + "\n")
    return d
