"""The paper's Fig. 5 (accuracy vs compression ratio) and Fig. 6 (per-layer widths before/after CUP)."""
from __future__ import annotations

import numpy as np

from esc2c.fsutil import atomic_path


def plot_widths(widths, path, title: str = "Per-layer width before/after CUP") -> None:
    """Bar chart of filters per conv layer / neurons per FC layer before and after pruning (Fig. 6)."""
    import matplotlib  # lazy: matplotlib only when a plot is written (Agg set before pyplot loads)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after matplotlib.use("Agg")

    names = [w[0] for w in widths]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(6, 0.5 * len(names)), 4))
    ax.bar(x - 0.2, [w[1] for w in widths], 0.4, label="before")
    ax.bar(x + 0.2, [w[2] for w in widths], 0.4, label="after")
    ax.set_xticks(x, names, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("filters / neurons")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=str(path).rsplit(".", 1)[-1])
    plt.close(fig)


def plot_accuracy_vs_ratio(rows, path, title: str = "Accuracy vs compression ratio") -> None:
    """Line plot of ``ratio_sweep`` rows (Fig. 5)."""
    import matplotlib  # lazy: matplotlib only when a plot is written (Agg set before pyplot loads)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after matplotlib.use("Agg")

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot([100 * r["ratio"] for r in rows], [100 * r["accuracy"] for r in rows], "o-")
    ax.set_xlabel("parameters removed (%)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=str(path).rsplit(".", 1)[-1])
    plt.close(fig)
