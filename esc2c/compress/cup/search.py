"""Choosing how much CUP prunes: a threshold, a ratio or a kept size hit exactly, kernel-friendly widths,
or the least pruning that passes a test (a board budget, :mod:`esc2c.compress.budget`).

All searches walk the clustering's own order (:meth:`Clustering.order`): the merges of every group's
dendrogram sorted by height, each removing one channel from one group. Step j of that order is the cut of
every dendrogram at the j-th merge height, so bisecting j is bisecting the global threshold t, with no
resolution limit. Kept parameters never grow with j.

Exact targets (``prune_to_params``, ``prune_to_ratio``): bisection gives the two neighbouring cuts around
the target; the closer is then refined one step at a time, a step adding back one group's most recent merge
or applying its next one (one channel, or one multiple of ``channel_multiple``), taking the step that gets
closest to the target while any does (ties: the step whose merge height is nearest the cut), and when none
does, one group's step up with another's step down. The result is
within ``tol`` (0.5 %) of the target whenever steps that small exist; when one channel of every group
costs more than that, it is the closest count the steps reach. Everything is deterministic.

Kernel-aware widths (:class:`Widths`): a group's kept count is rounded to a multiple of ``multiple``
(nearest, ties up; the full width is always allowed) and kept at ``min_channels`` or more (all of them when
the group is smaller). Which channels are kept follows the dendrogram: k channels = the group cut into k
clusters, each keeping its most important channel. Residual groups (a ResNet stage's shared channels) are
one group, so they are rounded together.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from esc2c.compress.cup.clustering import Clustering, cluster
from esc2c.compress.cup.surgery import PruneResult, _result, apply_keep
from esc2c.errors import Esc2cError
from esc2c.models.blocks import ESCNet
from esc2c.models.counting import count_params

DEFAULT_TOL = 0.005


@dataclass(frozen=True)
class Widths:
    """Kept-width rule per group: a multiple of ``multiple``, at least ``min_channels``."""
    multiple: int = 1
    min_channels: int = 1

    def __post_init__(self):
        if not isinstance(self.multiple, int) or self.multiple < 1:
            raise Esc2cError(f"channel_multiple must be an integer >= 1 (got {self.multiple!r})")
        if not isinstance(self.min_channels, int) or self.min_channels < 1:
            raise Esc2cError(f"min_channels must be an integer >= 1 (got {self.min_channels!r})")

    def allowed(self, size: int) -> list[int]:
        """Kept counts a group of ``size`` channels may have, ascending (never empty: ``size`` is in)."""
        lo = max(self.min_channels, 1)
        vals = [c for c in range(self.multiple, size + 1, self.multiple) if c >= lo]
        return sorted(set(vals) | {size})

    def round(self, size: int, raw: int) -> int:
        a = self.allowed(size)
        return min(a, key=lambda c: (abs(c - raw), -c))


PLAIN = Widths()


def param_terms(model: ESCNet, groups) -> list[tuple[int, str | None, str | None]]:
    """The deployed parameters as (elements per kept channel pair, output group, input group) per tensor:
    surgery slices a weight's dim 0 by its owner's group and dim 1 by the group it reads, biases and BN
    affine by the owner's group, so the pruned count is the sum of elements x kept out x kept in."""
    out_of = {p: g for g in groups if g.prunable for p in g.producers}
    in_of = {c: g for g in groups if g.prunable for c in g.consumers}
    terms = []
    for name, prm in model.named_parameters():
        if name == "aux_heads" or name.startswith("aux_heads."):
            continue
        path, _, kind = name.rpartition(".")
        owner = path.rsplit(".", 1)[0] if "." in path else ""
        go = out_of.get(owner)
        gi = in_of.get(path) if kind == "weight" and prm.dim() >= 2 else None
        div = (go.size if go else 1) * (gi.size if gi else 1)
        terms.append((prm.numel() // div, go.name if go else None, gi.name if gi else None))
    return terms


class Walk:
    """A model's clustering with the width rule: kept counts per step of the merge order, their parameter
    counts (cached) and the pruned models."""

    def __init__(self, model: ESCNet, cl: Clustering, widths: Widths = PLAIN):
        self.model, self.cl, self.widths = model, cl, widths
        self.groups = cl.prunable()
        self.events = cl.order()
        self.allowed = {g.name: widths.allowed(g.size) for g in self.groups}
        self._params: dict[tuple, int] = {}
        self._terms = param_terms(model, cl.groups)

    @property
    def steps(self) -> int:
        return len(self.events)

    def threshold(self, j: int) -> float:
        return self.events[j - 1][0] if j > 0 else 0.0

    def raw_counts(self, j: int) -> dict[str, int]:
        c = {g.name: g.size for g in self.groups}
        for _, name in self.events[:j]:
            c[name] -= 1
        return c

    def counts(self, j: int) -> dict[str, int]:
        raw = self.raw_counts(j)
        return {g.name: self.widths.round(g.size, raw[g.name]) for g in self.groups}

    def params(self, counts: dict[str, int]) -> int:
        key = tuple(counts[g.name] for g in self.groups)
        if key not in self._params:
            self._params[key] = sum(n * (counts[o] if o else 1) * (counts[i] if i else 1)
                                    for n, o, i in self._terms)
        return self._params[key]

    def first_step(self, ok: Callable[[int], bool]) -> int:
        """Smallest step j with ok(j), for ok monotone in j (false ... false true ... true); ``steps`` + 1
        when even the last step fails."""
        if not ok(self.steps):
            return self.steps + 1
        lo, hi = 0, self.steps           # ok(hi) holds
        while lo < hi:
            mid = (lo + hi) // 2
            if ok(mid):
                hi = mid
            else:
                lo = mid + 1
        return lo

    def result(self, counts: dict[str, int], threshold: float) -> PruneResult:
        keep = self.cl.keep_counts(counts)
        return _result(self.model, apply_keep(self.model, keep), threshold, keep)

    def _neighbours(self, counts: dict[str, int], t: float):
        """Single steps from ``counts``: each group one allowed width up or down, with the height of the merge
        undone or applied (how natural the step is at the cut t)."""
        for g in self.groups:
            a = self.allowed[g.name]
            i = a.index(counts[g.name])
            h = self.cl.heights(g.name)
            for j in (i - 1, i + 1):
                if 0 <= j < len(a):
                    merges = g.size - a[j]                 # merges applied at the new width
                    k = min(merges, g.size - counts[g.name])  # the merge crossed by the step
                    height = float(h[k]) if 0 <= k < len(h) else float("inf")
                    yield {**counts, g.name: a[j]}, abs(height - t)

    def closest(self, target: int) -> tuple[dict[str, int], float]:
        """Counts whose parameter count is closest to ``target`` (see the module docstring)."""
        j = self.first_step(lambda s: self.params(self.counts(s)) <= target)
        cands = [s for s in (j - 1, j) if 0 <= s <= self.steps]
        j = min(cands, key=lambda s: (abs(self.params(self.counts(s)) - target), s))
        t = self.threshold(j)
        best = self.counts(j)
        err = abs(self.params(best) - target)
        while err > 0:
            moves = [(abs(self.params(c) - target), dist, c) for c, dist in self._neighbours(best, t)]
            if not moves:
                break
            e, _, c = min(moves, key=lambda m: (m[0], m[1]))
            if e >= err:  # no single step helps: one group up and another down together
                pairs = [(abs(self.params(c2) - target), d1 + d2, c2) for c1, d1 in self._neighbours(best, t)
                         for c2, d2 in self._neighbours(c1, t)
                         if sum(c2[k] != best[k] for k in best) == 2]
                e, _, c = min(pairs, key=lambda m: (m[0], m[1]), default=(err, 0.0, best))
                if e >= err:
                    break
            best, err = c, e
        return best, t


def _target(model: ESCNet, total: int, ratio: float | None, params: int | None) -> int:
    if params is not None:
        if not isinstance(params, int) or isinstance(params, bool) or not 1 <= params <= total:
            raise Esc2cError(f"target params must be an integer in 1..{total} (the model's size) (got {params!r})")
        return params
    if ratio is None or not 0.0 <= float(ratio) < 1.0:
        raise Esc2cError(f"prune ratio must be in [0, 1) (got {ratio})")
    return int(round(total * (1.0 - float(ratio))))


def prune_to_params(model: ESCNet, target: int, widths: Widths = PLAIN, tol: float = DEFAULT_TOL,
                    method: str = "ward", clustering: Clustering | None = None) -> PruneResult:
    """Prune ``model`` to ``target`` deployed parameters (aux heads excluded), as exactly as the clustering
    order and ``widths`` allow (module docstring). Raises Esc2cError when even the most pruning the width
    rule allows keeps more than ``target`` (1 + ``tol``)."""
    return _prune(model, None, target, widths, tol, method, clustering)


def prune_to_ratio(model: ESCNet, ratio: float, tol: float = DEFAULT_TOL, method: str = "ward",
                   widths: Widths | None = None, channel_multiple: int = 1, min_channels: int = 1,
                   clustering: Clustering | None = None) -> PruneResult:
    """Remove the fraction ``ratio`` of the deployed parameters: ``prune_to_params`` with the target
    round(total x (1 - ratio)). ``tol`` is relative to the kept count."""
    w = widths or Widths(channel_multiple, min_channels)
    return _prune(model, ratio, None, w, tol, method, clustering)


def _prune(model, ratio, params, widths, tol, method, clustering) -> PruneResult:
    total = count_params(model)
    target = _target(model, total, ratio, params)
    cl = clustering or cluster(model, method)
    walk = Walk(model, cl, widths)
    floor = walk.params(walk.counts(walk.steps))
    if floor > target * (1 + tol):
        what = f"prune ratio {ratio}" if params is None else f"target of {params} parameters"
        raise Esc2cError(f"{what} is out of reach: the most CUP can prune ({_rule(widths)}) keeps {floor} of "
                         f"{total} parameters (removes {1 - floor / total:.4f}), {floor - target} more than "
                         f"{target}")
    counts, t = walk.closest(target)
    res = walk.result(counts, t)
    res.target = target
    return res


def _rule(w: Widths) -> str:
    if w == PLAIN:
        return "one channel per group"
    return f"channel multiple {w.multiple}, at least {w.min_channels} channels per group"


def prune(model: ESCNet, t: float, method: str = "ward", clustering: Clustering | None = None,
          widths: Widths = PLAIN) -> PruneResult:
    """Prune ``model`` at threshold ``t``, each group's count then rounded by ``widths`` (the model itself is
    left unchanged)."""
    if t < 0:
        raise Esc2cError(f"CUP threshold must be >= 0 (got {t})")
    cl = clustering or cluster(model, method)
    walk = Walk(model, cl, widths)
    raw = cl.counts_at(t)
    return walk.result({g.name: widths.round(g.size, raw[g.name]) for g in walk.groups}, t)


def prune_until(model: ESCNet, fits: Callable[[ESCNet], tuple[bool, str]], widths: Widths = PLAIN,
                start: PruneResult | None = None, method: str = "ward",
                clustering: Clustering | None = None) -> PruneResult:
    """The least pruning (smallest step of the merge order, at or past ``start``) whose model passes
    ``fits(model) -> (ok, why)``, found by bisection (``fits`` is taken to pass from some step on). When
    ``start`` already passes it is returned. Raises Esc2cError with the last step's ``why`` when even the
    most pruning fails."""
    cl = clustering or cluster(model, method)
    walk = Walk(model, cl, widths)
    if start is not None:
        ok, _ = fits(start.model)
        if ok:
            return start
    lo = 0 if start is None else walk.first_step(lambda s: walk.params(walk.counts(s)) <= start.params_after)
    memo: dict[int, tuple[bool, str, PruneResult]] = {}

    def at(s: int):
        if s not in memo:
            r = walk.result(walk.counts(s), walk.threshold(s))
            ok, why = fits(r.model)
            memo[s] = (ok, why, r)
        return memo[s]

    last = walk.steps
    if not at(last)[0]:
        raise Esc2cError(f"even the most pruning CUP can do ({_rule(widths)}, {at(last)[2].params_after} "
                         f"parameters kept) leaves {at(last)[1]}")
    a, b = min(lo, last), last
    while a < b:
        mid = (a + b) // 2
        if at(mid)[0]:
            b = mid
        else:
            a = mid + 1
    return at(b)[2]


def ratio_sweep(model: ESCNet, ratios, evaluate, tol: float = DEFAULT_TOL, method: str = "ward",
                widths: Widths = PLAIN) -> list[dict]:
    """Accuracy against compression ratio (the paper's Fig. 5): prune to each ratio, score with
    ``evaluate(pruned_model) -> accuracy`` (which may fine-tune first)."""
    cl = cluster(model, method)
    rows = []
    for target in ratios:
        res = prune_to_ratio(model, target, tol=tol, method=method, widths=widths, clustering=cl)
        rows.append({"target": float(target), "ratio": res.ratio, "params": res.params_after,
                     "threshold": res.threshold, "accuracy": float(evaluate(res.model))})
    return rows
