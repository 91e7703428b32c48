"""experiment.json, experiment.md and experiment.png, rebuilt from the finished cells of an experiment directory.

Accuracies are in percent of the test fold's clips, differences in percentage points. Per model row: mean,
standard deviation and 95 % t interval over the cells, and every cell's value. Paired differences (the same
cells for both models) carry the 95 % t interval of their mean and a verdict: a claim holds only when that
whole interval lies above its margin (0 for "a beats b"; -1.5 points for "M_QaKD stays within 1.5 points of
M_Ori").

With ``against`` (another experiment directory, e.g. the same grid under the previous recipe), every model is
also compared with itself there: this experiment minus the other on the cells both finished (same seed, same
test fold), with the config fields that differ between the two named, so a recipe change carries its own
interval.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from esc2c.errors import Esc2cError
from esc2c.experiment import stats
from esc2c.experiment.grid import CELL_RE, CELLS_DIR, REPORT, Cell, comparable, lock_path, read_grid, read_lock
from esc2c.fsutil import atomic_path, atomic_write_text

DEPLOYED = "M_QaKD integer"
ROW_ORDER = ("M_Ori", "M_Pru", "M_PoKD", "KD", "FitNet", "MHKD", "ALP-KD", "M_Qua (PTQ)", "M_OriQ", "M_Qua",
             "DirectKD", "M_QaKD", DEPLOYED)
# (name, model a, model b, margin in points, the claim in words)
COMPARISONS = (
    ("PoKD - M_Pru", "M_PoKD", "M_Pru", 0.0, "PoKD beats CE fine-tuning"),
    ("PoKD - KD", "M_PoKD", "KD", 0.0, "PoKD beats vanilla KD"),
    ("PoKD - FitNet", "M_PoKD", "FitNet", 0.0, "PoKD beats FitNet"),
    ("PoKD - MHKD", "M_PoKD", "MHKD", 0.0, "PoKD beats MHKD"),
    ("PoKD - ALP-KD", "M_PoKD", "ALP-KD", 0.0, "PoKD beats ALP-KD"),
    ("QaKD - DirectKD", "M_QaKD", "DirectKD", 0.0, "QaKD beats DirectKD"),
    ("QaKD - M_Qua", "M_QaKD", "M_Qua", 0.0, "QaKD beats INT8 QAT with CE only"),
    ("M_QaKD - M_Ori", "M_QaKD", "M_Ori", -1.5, "M_QaKD stays within 1.5 points of M_Ori"),
    (f"{DEPLOYED} - M_Ori", DEPLOYED, "M_Ori", -1.5, "the deployed integer model stays within 1.5 points of M_Ori"),
)
VERDICT_WORDS = {"holds": "HOLDS", "reversed": "does NOT hold (interval below the margin: the opposite holds)",
                 "not shown": "does NOT hold (interval contains the margin)",
                 "too few cells": "cannot tell (fewer than 2 cells)"}


def collect(out_dir) -> dict:
    """Per finished cell: accuracy per model (%), params per model, deployed figures and wall time."""
    root = Path(out_dir) / CELLS_DIR
    if not root.is_dir():
        raise Esc2cError(f"{Path(out_dir)}: not an experiment directory (no {CELLS_DIR}/)")
    cells, unfinished = {}, []
    for d in sorted(p for p in root.iterdir() if p.is_dir() and CELL_RE.match(p.name)):
        path = d / REPORT
        if not path.is_file():
            unfinished.append(d.name)
            continue
        try:
            rep = json.loads(path.read_text())
            acc = {r["model"]: 100.0 * r["val_acc"] for r in rep["table"]}
            params = {r["model"]: r["params"] for r in rep["table"]}
            dep = rep["deployed"]
            acc[DEPLOYED] = 100.0 * dep["int_val_acc"]
            params[DEPLOYED] = dep["params"]
            cells[d.name] = {"acc": acc, "params": params, "wall_s": rep.get("wall_s"),
                             "prune_ratio": rep["prune"]["ratio"], "int8_bytes": dep["int8_bytes"],
                             "test_clips": rep["data"]["val_clips"], "train_folds": rep["config"]["train_folds"],
                             "test_folds": rep["config"]["val_folds"], "seed": rep["config"]["seed"]}
        except (ValueError, KeyError, TypeError) as e:
            raise Esc2cError(f"{path}: unreadable cell report ({type(e).__name__}: {e})") from None
    return {"cells": cells, "unfinished": unfinished}


def compare(exp: dict, other_dir) -> dict:
    """Per model of ``exp``: its accuracy minus the same model's in the experiment at ``other_dir``, paired
    over the cells both finished; and the config fields that differ (this experiment's value, the other's)."""
    other_cfg = read_grid(other_dir)
    other = collect(other_dir)["cells"]
    mine, theirs = comparable(exp["config"]), comparable(other_cfg)
    fields = {k: [mine.get(k), theirs.get(k)] for k in sorted(set(mine) | set(theirs))
              if mine.get(k) != theirs.get(k)}
    rows = []
    for r in exp["rows"]:
        m = r["model"]
        b = {k: c["acc"][m] for k, c in other.items() if m in c["acc"]}
        d = stats.paired(r["values"], b)
        if d["n"]:
            rows.append({"model": m, **d, "verdict": stats.verdict(d, 0.0)})
    if not rows:
        raise Esc2cError(f"{Path(other_dir)}: no finished cell in common with this experiment to compare")
    return {"dir": str(other_dir), "fields": fields, "rows": rows}


def summarize(out_dir, against=None) -> dict:
    """The experiment summary dict (what experiment.json holds) from the finished cells; ``against``: another
    experiment directory to compare every model with (:func:`compare`)."""
    config = read_grid(out_dir)
    got = collect(out_dir)
    cells = got["cells"]
    if not cells:
        raise Esc2cError(f"{Path(out_dir) / CELLS_DIR}: no finished cell (no {REPORT}) to summarize")
    models = [m for m in ROW_ORDER if any(m in c["acc"] for c in cells.values())]
    models += sorted({m for c in cells.values() for m in c["acc"]} - set(models))
    per_model = {m: {k: c["acc"][m] for k, c in cells.items() if m in c["acc"]} for m in models}
    rows = []
    for m in models:
        params = [c["params"][m] for c in cells.values() if m in c["params"]]
        rows.append({"model": m, **stats.describe(per_model[m].values()), "values": per_model[m],
                     "params_mean": float(np.mean(params)) if params else None})
    diffs = []
    for name, a, b, margin, claim in COMPARISONS:
        if a not in per_model or b not in per_model:
            continue
        d = stats.paired(per_model[a], per_model[b])
        diffs.append({"name": name, "a": a, "b": b, "margin": margin, "claim": claim, **d,
                      "verdict": stats.verdict(d, margin)})
    held = []
    for name in got["unfinished"]:
        holder = read_lock(lock_path(out_dir, Cell.parse(name)))
        held.append({"cell": name, "lock": holder})
    exp = {"unit": "accuracy on the test fold, %; differences in percentage points",
           "level": stats.LEVEL, "config": config, "cells": cells, "unfinished": held,
           "rows": rows, "differences": diffs}
    if against is not None:
        exp["against"] = compare(exp, against)
    return exp


def _fmt(v, signed: bool = False) -> str:
    if v is None:
        return "-"
    return f"{v:+.2f}" if signed else f"{v:.2f}"


def _ci(d: dict, signed: bool = False) -> str:
    return "-" if d.get("ci") is None else f"[{_fmt(d['ci'][0], signed)}, {_fmt(d['ci'][1], signed)}]"


def claim_lines(exp: dict) -> list[str]:
    """One plain sentence per paired difference."""
    out = []
    for d in exp["differences"]:
        out.append(f"{d['name']}: {_fmt(d['mean'], True)} points, 95 % interval {_ci(d, True)} over {d['n']} "
                   f"cells -> claim '{d['claim']}' {VERDICT_WORDS[d['verdict']]}"
                   + ("" if d["margin"] == 0 else f" (margin {d['margin']:+.1f})"))
    return out


def against_lines(exp: dict) -> list[str]:
    """One plain sentence per model compared with the ``against`` experiment (none without one)."""
    a = exp.get("against")
    if a is None:
        return []
    fields = "; ".join(f"{k} {v[0]!r} (there {v[1]!r})" for k, v in a["fields"].items()) or "none"
    out = [f"against {a['dir']} (config fields that differ: {fields}):"]
    for d in a["rows"]:
        out.append(f"{d['model']}: {_fmt(d['mean'], True)} points, 95 % interval {_ci(d, True)} over {d['n']} "
                   f"cells ({d['verdict']})")
    return out


def format_console(exp: dict) -> str:
    """The per-model means and the claims, for the terminal."""
    lines = [f"{'model':<16} {'mean %':>7} {'std':>6} {'95 % interval':>17} {'cells':>5}"]
    for r in exp["rows"]:
        lines.append(f"{r['model']:<16} {_fmt(r['mean']):>7} {_fmt(r['std']):>6} {_ci(r):>17} {r['n']:>5}")
    extra = against_lines(exp)
    return "\n".join(lines + [""] + claim_lines(exp) + ([""] + extra if extra else []))


def format_markdown(exp: dict) -> str:
    c = exp["config"]
    names = sorted(exp["cells"], key=lambda n: Cell.parse(n))
    seeds = sorted({exp["cells"][n]["seed"] for n in names})
    folds = sorted({f for n in names for f in exp["cells"][n]["test_folds"]})
    walls = [exp["cells"][n]["wall_s"] for n in names if exp["cells"][n]["wall_s"] is not None]
    ratios = [100 * exp["cells"][n]["prune_ratio"] for n in names]
    md = [f"# esc2c experiment: {c['arch']} (width {c['width']}) on {c['dataset']}", "",
          f"{len(names)} finished cells: seeds {seeds} x test folds {folds}; each cell trains on the other folds of "
          f"{c['cv_folds'] or sorted(set(c['train_folds']) | set(c['val_folds']))} and "
          + (f"keeps every stage's last epoch ({100 * c['holdout']:.0f} % of the training recordings held out "
             "and scored only)" if c.get("epoch_selection", "best") == "last" else
             f"picks every stage's best epoch on {100 * c['holdout']:.0f} % of the training recordings held out")
          + f", so the test fold is only tested. Epochs {c['epochs_teacher']}/{c['epochs_prune']}/{c['epochs_qat_ta']}/{c['epochs_qakd']}, "
          + (f"target {c['target_params']:,} kept parameters (a budget, not a ratio: reached "
             f"{np.mean(ratios):.2f} +- {np.std(ratios):.2f} % compression), " if c.get("target_params") else
             f"prune ratio {c['prune_ratio']} (reached {np.mean(ratios):.2f} +- {np.std(ratios):.2f} %), ")
          + (f"wall time per cell {np.mean(walls):.0f} s (sum {np.sum(walls):.0f} s)." if walls else ""), ""]
    if exp["unfinished"]:
        md += ["Unfinished cells (not counted): " + ", ".join(
            u["cell"] + (f" (held by {u['lock'].get('host')} pid {u['lock'].get('pid')})" if u["lock"] else "")
            for u in exp["unfinished"]), ""]
    md += ["## Accuracy per model (%)", "",
           "| model | mean | std | 95 % interval | cells | params (mean) | per cell |",
           "|---|---:|---:|---:|---:|---:|---|"]
    for r in exp["rows"]:
        per = ", ".join(f"{k} {v:.2f}" for k, v in sorted(r["values"].items(), key=lambda kv: Cell.parse(kv[0])))
        params = "-" if r["params_mean"] is None else f"{r['params_mean']:.0f}"
        md.append(f"| {r['model']} | {_fmt(r['mean'])} | {_fmt(r['std'])} | {_ci(r)} | {r['n']} | {params} | {per} |")
    md += ["", "## Paired differences (points, same cells)", "",
           "| difference | mean | std | 95 % interval | cells | claim | verdict |", "|---|---:|---:|---:|---:|---|---|"]
    for d in exp["differences"]:
        md.append(f"| {d['name']} | {_fmt(d['mean'], True)} | {_fmt(d['std'])} | {_ci(d, True)} | {d['n']} | "
                  f"{d['claim']} (interval above {d['margin']:+.1f}) | {VERDICT_WORDS[d['verdict']]} |")
    md += ["", "A claim holds only when the whole 95 % t interval of the paired difference lies above its margin.",
           ""] + [f"- {line}" for line in claim_lines(exp)] + ["", "![per-model accuracy](experiment.png)", ""]
    a = exp.get("against")
    if a is not None:
        md += [f"## Against {a['dir']} (this experiment minus that one, same cells)", "",
               "Config fields that differ: " + ("; ".join(f"`{k}` {v[0]!r} here, {v[1]!r} there"
                                                          for k, v in a["fields"].items()) or "none") + ".", "",
               "| model | mean | std | 95 % interval | cells | verdict (interval above 0) |",
               "|---|---:|---:|---:|---:|---|"]
        for d in a["rows"]:
            md.append(f"| {d['model']} | {_fmt(d['mean'], True)} | {_fmt(d['std'])} | {_ci(d, True)} | {d['n']} | "
                      f"{d['verdict']} |")
        md.append("")
    return "\n".join(md)


def plot(exp: dict, path) -> None:
    """Top: per-model mean with its 95 % interval and every cell's value; bottom: the paired differences."""
    import matplotlib  # lazy: matplotlib only when a plot is written (Agg set before pyplot loads)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after matplotlib.use("Agg")

    rows, diffs = exp["rows"], exp["differences"]
    fig, (ax, bx) = plt.subplots(2, 1, figsize=(max(7.0, 0.6 * max(len(rows), len(diffs)) + 2), 8.0))
    rng = np.random.default_rng(0)
    for i, r in enumerate(rows):
        v = np.array(list(r["values"].values()))
        ax.scatter(i + rng.uniform(-0.15, 0.15, v.size), v, s=12, color="0.55", zorder=2)
        lo, hi = r["ci"] if r["ci"] is not None else (r["mean"], r["mean"])
        ax.errorbar(i, r["mean"], yerr=[[r["mean"] - lo], [hi - r["mean"]]], fmt="o", color="tab:blue",
                    capsize=4, zorder=3)
    ax.set_xticks(range(len(rows)), [r["model"] for r in rows], rotation=35, ha="right")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("mean, 95 % interval, cells")
    for i, d in enumerate(diffs):
        v = np.array(list(d["values"].values()))
        bx.scatter(i + rng.uniform(-0.15, 0.15, v.size), v, s=12, color="0.55", zorder=2)
        if d["mean"] is not None:
            lo, hi = d["ci"] if d["ci"] is not None else (d["mean"], d["mean"])
            color = {"holds": "tab:green", "reversed": "tab:red"}.get(d["verdict"], "tab:orange")
            bx.errorbar(i, d["mean"], yerr=[[d["mean"] - lo], [hi - d["mean"]]], fmt="o", color=color,
                        capsize=4, zorder=3)
        bx.plot([i - 0.3, i + 0.3], [d["margin"]] * 2, color="k", lw=1)
    bx.axhline(0, color="0.7", lw=0.8, zorder=1)
    bx.set_xticks(range(len(diffs)), [d["name"] for d in diffs], rotation=35, ha="right")
    bx.set_ylabel("paired difference (points)")
    bx.set_title("paired differences: green holds, orange not shown, red reversed (bar: the claim's margin)")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def write(out_dir, against=None) -> dict:
    """Summarize the finished cells into experiment.json / .md / .png; returns the summary. ``against``:
    another experiment directory every model is compared with (:func:`compare`)."""
    out = Path(out_dir)
    exp = summarize(out, against)
    plot(exp, out / "experiment.png")
    atomic_write_text(out / "experiment.json", json.dumps(exp, indent=1) + "\n")
    atomic_write_text(out / "experiment.md", format_markdown(exp))
    return exp
