"""CUP steps 2-4: filter features, their normalisation, and the per-group dendrograms cut at one global
threshold (see the package docstring)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.cluster.hierarchy import linkage
from torch import nn

from esc2c.compress.cup.groups import ChannelGroup, channel_groups
from esc2c.errors import Esc2cError
from esc2c.models.blocks import ConvBNAct, ESCNet, LinearAct


def _incoming(model: nn.Module, path: str) -> torch.Tensor:
    m = model.get_submodule(path)
    if isinstance(m, ConvBNAct):
        w = m.conv.weight.detach().double()
        bn = m.bn
        scale = (bn.weight.detach().double() / torch.sqrt(bn.running_var.double() + bn.eps)).abs()
        return (w * scale[:, None, None, None]).flatten(2).norm(dim=2)       # [out, in]
    if isinstance(m, LinearAct):
        return m.fc.weight.detach().double().abs()
    raise Esc2cError(f"CUP: cannot read filters of {path} ({type(m).__name__})")


def _outgoing(model: nn.Module, path: str) -> torch.Tensor:
    m = model.get_submodule(path)
    w = m.weight.detach().double()
    return (w.flatten(2).norm(dim=2) if w.dim() == 4 else w.abs()).t()        # [channels, next filters]


def group_features(model: ESCNet, group: ChannelGroup) -> tuple[np.ndarray, np.ndarray]:
    """(features, importance) of one group's channels (see module doc, steps 2-3).

    ``features`` [channels, D] is what is clustered: each block centred and divided by its RMS deviation from
    the mean row. ``importance`` [channels] picks a cluster's representative: the norm of the raw features with
    each block divided by its mean row norm.
    """
    blocks = [_incoming(model, p) for p in group.producers] + [_outgoing(model, c) for c in group.consumers]
    feats, imp = [], []
    for b in blocks:
        mean = b.norm(dim=1).mean()
        imp.append(b / mean if mean > 0 else b)
        centred = b - b.mean(dim=0, keepdim=True)
        spread = centred.pow(2).sum(dim=1).mean().sqrt()
        feats.append(centred / spread if spread > 0 else centred)
    scale = math.sqrt(len(blocks))
    return (torch.cat(feats, dim=1) / scale).numpy(), (torch.cat(imp, dim=1) / scale).norm(dim=1).numpy()


def cut(z: np.ndarray, n: int, merges: int) -> np.ndarray:
    """Cluster labels of ``n`` points after the first ``merges`` rows of the linkage ``z`` (its merge order)."""
    parent = list(range(2 * n - 1))

    def root(a):
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for i in range(merges):
        a, b = int(z[i, 0]), int(z[i, 1])
        parent[root(a)] = n + i
        parent[root(b)] = n + i
    return np.array([root(a) for a in range(n)])


@dataclass
class Clustering:
    """Per-group dendrograms computed once.

    Cutting every group at one global threshold t (``keep(t)``) applies, in each group, the merges of height
    <= t. Ordered by height across all groups, the merges form one sequence (``order``): each step removes
    exactly one channel from one group, so the first j steps (``counts_after(j)``) are the cut just above the
    j-th merge height, and any kept count per group can be reached by cutting its own dendrogram after the
    right number of merges (``keep_counts``). A cluster keeps its most important channel.
    """
    groups: list[ChannelGroup]
    features: dict[str, np.ndarray]
    importance: dict[str, np.ndarray]
    linkages: dict[str, np.ndarray]

    def prunable(self) -> list[ChannelGroup]:
        return [g for g in self.groups if g.prunable]

    def heights(self, name: str) -> np.ndarray:
        """Merge heights of one group in merge order, made non-decreasing (centroid/median linkages may
        invert; a merge is never ranked before the one it builds on)."""
        z = self.linkages.get(name)
        return np.maximum.accumulate(z[:, 2]) if z is not None else np.zeros(0)

    def order(self) -> list[tuple[float, str]]:
        """Every merge of every group as (height, group), ascending; ties keep model order, then merge order."""
        rank = {g.name: i for i, g in enumerate(self.prunable())}
        ev = [(float(h), rank[g.name], k, g.name) for g in self.prunable() for k, h in enumerate(self.heights(g.name))]
        return [(h, name) for h, _, _, name in sorted(ev)]

    def counts_at(self, t: float) -> dict[str, int]:
        """Kept channels per group when every dendrogram is cut at threshold ``t``."""
        return {g.name: g.size - int(np.sum(self.heights(g.name) <= max(float(t), 0.0))) for g in self.prunable()}

    def keep_counts(self, counts: dict[str, int]) -> dict[str, list[int]]:
        """Kept channel indices when group g keeps ``counts[g]`` channels: its dendrogram cut after
        size - counts[g] merges, one representative (the most important channel) per cluster."""
        out = {}
        for g in self.prunable():
            n = int(counts.get(g.name, g.size))
            if not 1 <= n <= g.size:
                raise Esc2cError(f"CUP: group {g.name} cannot keep {n} of its {g.size} channels")
            if n == g.size or g.name not in self.linkages:
                out[g.name] = list(range(g.size))
                continue
            labels = cut(self.linkages[g.name], g.size, g.size - n)
            norms = self.importance[g.name]
            reps = [int(np.flatnonzero(labels == c)[np.argmax(norms[labels == c])]) for c in np.unique(labels)]
            out[g.name] = sorted(reps)
        return out

    def keep(self, t: float) -> dict[str, list[int]]:
        return self.keep_counts(self.counts_at(t))

    def max_height(self) -> float:
        return max((float(z[-1, 2]) for z in self.linkages.values()), default=0.0)


def cluster(model: ESCNet, method: str = "ward") -> Clustering:
    groups = channel_groups(model)
    feats, imp, links = {}, {}, {}
    for g in groups:
        if not g.prunable:
            continue
        feats[g.name], imp[g.name] = group_features(model, g)
        if g.size >= 2:
            links[g.name] = linkage(feats[g.name], method=method, metric="euclidean")
    return Clustering(groups, feats, imp, links)
