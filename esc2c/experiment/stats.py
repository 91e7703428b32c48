"""Statistics over experiment cells: mean and standard deviation, and paired differences with t intervals.

A paired difference compares two models on the same cells (same seed, same test fold): the per-cell
differences d_c = a_c - b_c, their mean, their sample standard deviation s (ddof 1) and the 95 % Student t
interval of the mean, mean +- t_{0.975, n-1} s / sqrt(n). A claim "a beats b by more than margin" holds only
when the whole interval lies above the margin.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import stats

LEVEL = 0.95


def describe(values, level: float = LEVEL) -> dict:
    """n, mean, std (ddof 1; None for one value) and the t interval of the mean (None below two values)."""
    v = np.asarray(list(values), dtype=np.float64)
    n = int(v.size)
    if n == 0:
        return {"n": 0, "mean": None, "std": None, "ci": None}
    mean = float(v.mean())
    if n < 2:
        return {"n": 1, "mean": mean, "std": None, "ci": None}
    std = float(v.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * std / math.sqrt(n)
    return {"n": n, "mean": mean, "std": std, "ci": [mean - half, mean + half]}


def paired(a: dict, b: dict, level: float = LEVEL) -> dict:
    """The paired difference a - b over the keys (cells) both have: per-cell values and :func:`describe`."""
    keys = sorted(set(a) & set(b))
    diffs = {k: float(a[k]) - float(b[k]) for k in keys}
    return {**describe(diffs.values(), level), "values": diffs}


def verdict(d: dict, margin: float = 0.0) -> str:
    """'holds' (interval above the margin), 'reversed' (interval below it), 'not shown' (interval contains
    it) or 'too few cells' (no interval)."""
    if d.get("ci") is None:
        return "too few cells"
    lo, hi = d["ci"]
    if lo > margin:
        return "holds"
    if hi < margin:
        return "reversed"
    return "not shown"
