"""CUP: cluster pruning (Duggal et al. 2021) of an ESCNet into a smaller dense ESCNet.

1. Channel groups. Walking the model finds every set of channels that must be pruned together: the output
   channels of one conv (or hidden FC layer), or, in a ResNet, all channels tied by identity shortcuts (the
   stem and the second conv of every block of a stage that keeps its width form one group). Each group knows
   its producers (layers whose outputs are these channels) and its consumers (layers reading them: the next
   conv, a block's projection shortcut, the head's first FC after global pooling, and aux heads).
2. Filter features. Channel c of a group is described by, for each producer, the L2 norms over the kernel
   taps of its incoming weights per input channel (BN scale gamma/sqrt(var+eps) folded in, so the feature
   reflects what the channel outputs), concatenated with, for each deployed consumer, the L2 norms over the
   taps of its outgoing weights per next-layer filter. Aux heads are sliced but do not vote: they are removed
   after training.
3. Normalisation, so one threshold serves all layers: each of those blocks (one per producer or consumer) is
   centred on its mean row and divided by its RMS deviation, and the concatenation by sqrt(number of blocks).
   Norm features are positive and share a common profile; what tells filters apart is their deviation from
   it. After this, in every layer the mean squared distance of a channel to the layer's mean is 1 whatever
   its fan-in, fan-out or weight scale, so a distance t means the same everywhere, and a layer is pruned
   harder when its filters sit in tighter clusters than its own spread (or when it has many filters).
4. Clustering. Per group, agglomerative hierarchical clustering (scipy linkage, Ward by default) cut at the
   global distance t (fcluster criterion="distance"); one representative per cluster is kept, the channel
   with the largest importance: the norm of its features with each block divided by its mean row norm
   (uncentred). t = 0 merges nothing (unless two channels are exact duplicates).
5. Surgery. Kept channels are copied into a freshly built model: conv filters, BN channels, the consumers'
   input slices (next convs, shortcuts, FC columns, aux-head convs). The result is dense: no masks.

``prune_to_ratio`` bisects t to remove a requested fraction of the deployed parameters (aux heads excluded).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.cluster.hierarchy import fcluster, linkage
from torch import nn

from esc2c.errors import Esc2cError
from esc2c.models.blocks import BasicBlock, ConvBNAct, ESCNet, LinearAct
from esc2c.models.counting import count_params
from esc2c.models.registry import build_from_config, layer_widths, model_config


@dataclass
class ChannelGroup:
    name: str
    size: int
    prunable: bool = True
    producers: list[str] = field(default_factory=list)       # ConvBNAct / LinearAct paths (output dim)
    consumers: list[str] = field(default_factory=list)       # Conv2d / Linear paths (input dim), deployed
    aux_consumers: list[str] = field(default_factory=list)   # aux-head Conv2d paths (input dim)


def channel_groups(model: ESCNet) -> list[ChannelGroup]:
    """Every set of channels that is pruned as one, in model order (the input group is not prunable)."""
    groups: list[ChannelGroup] = []

    def new(name, size, producers):
        g = ChannelGroup(name, size, producers=list(producers))
        groups.append(g)
        return g

    first = model.stages[0][0]
    cin = first.conv.in_channels if isinstance(first, ConvBNAct) else first.conv1.conv.in_channels
    cur = ChannelGroup("input", cin, prunable=False)
    groups.append(cur)
    for i, stage in enumerate(model.stages):
        for j, layer in enumerate(stage):
            p = f"stages.{i}.{j}"
            if isinstance(layer, ConvBNAct):
                cur.consumers.append(f"{p}.conv")
                cur = new(p, layer.conv.out_channels, [p])
            elif isinstance(layer, BasicBlock):
                cur.consumers.append(f"{p}.conv1.conv")
                mid = new(f"{p}.conv1", layer.conv1.conv.out_channels, [f"{p}.conv1"])
                mid.consumers.append(f"{p}.conv2.conv")
                if layer.shortcut is not None:
                    cur.consumers.append(f"{p}.shortcut.conv")
                    cur = new(f"{p}.out", layer.conv2.conv.out_channels, [f"{p}.conv2", f"{p}.shortcut"])
                else:
                    cur.producers.append(f"{p}.conv2")      # identity shortcut ties conv2 to the block input
            elif not isinstance(layer, (nn.MaxPool2d, nn.AvgPool2d)):
                raise Esc2cError(f"CUP: {p} is a {type(layer).__name__}, not an esc2c block")
        if i in model.aux_taps and len(model.aux_heads):
            cur.aux_consumers.append(f"aux_heads.{model.aux_taps.index(i)}.conv.conv")
    for k, hidden in enumerate(model.head.hidden):
        cur.consumers.append(f"head.hidden.{k}.fc")
        cur = new(f"head.hidden.{k}", hidden.fc.out_features, [f"head.hidden.{k}"])
    cur.consumers.append("head.fc")
    for g in groups:
        if g.name == "input" or any(p == "" for p in g.producers):
            g.prunable = False
    return groups


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


@dataclass
class Clustering:
    """Per-group dendrograms computed once; ``keep(t)`` cuts them all at one threshold."""
    groups: list[ChannelGroup]
    features: dict[str, np.ndarray]
    importance: dict[str, np.ndarray]
    linkages: dict[str, np.ndarray]

    def keep(self, t: float) -> dict[str, list[int]]:
        out = {}
        for g in self.groups:
            if not g.prunable:
                continue
            if g.name not in self.linkages:
                out[g.name] = list(range(g.size))
                continue
            labels = fcluster(self.linkages[g.name], t=max(float(t), 0.0), criterion="distance")
            norms = self.importance[g.name]
            reps = [int(np.flatnonzero(labels == c)[np.argmax(norms[labels == c])]) for c in np.unique(labels)]
            out[g.name] = sorted(reps)
        return out

    def max_height(self) -> float:
        return max((float(z[-1, 2]) for z in self.linkages.values()), default=0.0)


def cluster(model: ESCNet, method: str = "ward") -> Clustering:
    groups = [g for g in channel_groups(model)]
    feats, imp, links = {}, {}, {}
    for g in groups:
        if not g.prunable:
            continue
        feats[g.name], imp[g.name] = group_features(model, g)
        if g.size >= 2:
            links[g.name] = linkage(feats[g.name], method=method, metric="euclidean")
    return Clustering(groups, feats, imp, links)


def _pruned_config(model: ESCNet, out_keep: dict, in_keep: dict) -> dict:
    cfg = model_config(model)
    n_out = lambda p, d: len(out_keep[p]) if p in out_keep else d      # noqa: E731
    n_in = lambda p, d: len(in_keep[p]) if p in in_keep else d         # noqa: E731
    for i, stage in enumerate(cfg["stages"]):
        for j, layer in enumerate(stage):
            p = f"stages.{i}.{j}"
            if layer["type"] == "conv":
                layer["cin"] = n_in(f"{p}.conv", layer["cin"])
                layer["cout"] = n_out(p, layer["cout"])
            elif layer["type"] == "block":
                layer["cin"] = n_in(f"{p}.conv1.conv", layer["cin"])
                layer["cmid"] = n_out(f"{p}.conv1", layer["cmid"])
                layer["cout"] = n_out(f"{p}.conv2", layer["cout"])
    h = cfg["head"]
    first = "head.hidden.0.fc" if h["hidden"] else "head.fc"
    h["cin"] = n_in(first, h["cin"])
    h["hidden"] = [n_out(f"head.hidden.{k}", w) for k, w in enumerate(h["hidden"])]
    for k, a in enumerate(cfg["aux"]):
        a["cin"] = n_in(f"aux_heads.{k}.conv.conv", a["cin"])
    return cfg


def _index_maps(groups: list[ChannelGroup], keep: dict[str, list[int]]):
    out_keep, in_keep = {}, {}
    for g in groups:
        if g.name not in keep:
            continue
        k = torch.as_tensor(keep[g.name], dtype=torch.long)
        if len(k) == 0 or int(k.min()) < 0 or int(k.max()) >= g.size:
            raise Esc2cError(f"CUP: kept channels of {g.name} must be within 0..{g.size - 1} and non-empty")
        for p in g.producers:
            out_keep[p] = k
        for c in g.consumers + g.aux_consumers:
            in_keep[c] = k
    return out_keep, in_keep


@torch.no_grad()
def apply_keep(model: ESCNet, keep: dict[str, list[int]]) -> ESCNet:
    """A new dense ESCNet holding only the kept channels of each group (group name -> channel indices)."""
    groups = channel_groups(model)
    out_keep, in_keep = _index_maps(groups, keep)
    new = build_from_config(_pruned_config(model, out_keep, in_keep))
    new_modules = dict(new.named_modules())
    for path, m in model.named_modules():
        owner = path.rsplit(".", 1)[0] if "." in path else ""
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            w = m.weight
            if owner in out_keep:
                w = w.index_select(0, out_keep[owner])
            if path in in_keep:
                w = w.index_select(1, in_keep[path])
            tgt = new_modules[path]
            tgt.weight.copy_(w)
            if m.bias is not None:
                b = m.bias if owner not in out_keep else m.bias.index_select(0, out_keep[owner])
                tgt.bias.copy_(b)
        elif isinstance(m, nn.BatchNorm2d):
            tgt = new_modules[path]
            for name in ("weight", "bias", "running_mean", "running_var"):
                v = getattr(m, name)
                getattr(tgt, name).copy_(v.index_select(0, out_keep[owner]) if owner in out_keep else v)
            tgt.num_batches_tracked.copy_(m.num_batches_tracked)
    new.train(model.training)
    return new


@dataclass
class PruneResult:
    model: ESCNet
    threshold: float
    keep: dict[str, list[int]]
    params_before: int
    params_after: int
    widths: list[tuple[str, int, int]]     # (layer, width before, width after): the paper's Fig. 6

    @property
    def ratio(self) -> float:
        """Fraction of deployed parameters removed."""
        return 1.0 - self.params_after / self.params_before

    def summary(self) -> dict:
        return {"threshold": self.threshold, "params_before": self.params_before,
                "params_after": self.params_after, "ratio": self.ratio,
                "widths": [list(w) for w in self.widths]}


def _result(model, pruned, t, keep) -> PruneResult:
    before, after = layer_widths(model), layer_widths(pruned)
    widths = [(n, b, a) for (n, b), (_, a) in zip(before, after)]
    return PruneResult(pruned, float(t), keep, count_params(model), count_params(pruned), widths)


def prune(model: ESCNet, t: float, method: str = "ward", clustering: Clustering | None = None) -> PruneResult:
    """Prune ``model`` at threshold ``t`` (the model itself is left unchanged)."""
    if t < 0:
        raise Esc2cError(f"CUP threshold must be >= 0 (got {t})")
    cl = clustering or cluster(model, method)
    keep = cl.keep(t)
    return _result(model, apply_keep(model, keep), t, keep)


def _params_for(model: ESCNet, cl: Clustering, t: float) -> int:
    out_keep, in_keep = _index_maps(cl.groups, cl.keep(t))
    with torch.device("meta"):
        return count_params(build_from_config(_pruned_config(model, out_keep, in_keep)))


def prune_to_ratio(model: ESCNet, ratio: float, tol: float = 0.005, method: str = "ward",
                   max_iter: int = 100) -> PruneResult:
    """Bisect the global threshold t so that a fraction ``ratio`` of the deployed parameters is removed,
    within ``tol`` (absolute). Raises Esc2cError when no threshold gets that close."""
    if not 0.0 <= ratio < 1.0:
        raise Esc2cError(f"prune ratio must be in [0, 1) (got {ratio})")
    cl = cluster(model, method)
    total = count_params(model)
    r = lambda t: 1.0 - _params_for(model, cl, t) / total          # noqa: E731
    lo, hi = 0.0, cl.max_height() * (1 + 1e-9) + 1e-12
    r_hi = r(hi)
    if r_hi < ratio - tol:
        raise Esc2cError(f"prune ratio {ratio} is out of reach: one channel per layer removes only {r_hi:.4f} "
                         "of the parameters")
    best_t, best_r = lo, r(lo)
    while abs(best_r - ratio) > tol and max_iter > 0:
        max_iter -= 1
        mid = 0.5 * (lo + hi)
        rm = r(mid)
        if abs(rm - ratio) < abs(best_r - ratio):
            best_t, best_r = mid, rm
        if rm < ratio:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-12 * max(1.0, hi):
            break
    if abs(best_r - ratio) > tol:
        raise Esc2cError(f"CUP could not reach prune ratio {ratio} within {tol}: the closest threshold "
                         f"{best_t:.6g} removes {best_r:.4f} of the parameters (the model is too small for "
                         "that resolution)")
    return prune(model, best_t, method, clustering=cl)


def ratio_sweep(model: ESCNet, ratios, evaluate, tol: float = 0.005, method: str = "ward") -> list[dict]:
    """Accuracy against compression ratio (the paper's Fig. 5): prune to each ratio, score with
    ``evaluate(pruned_model) -> accuracy`` (which may fine-tune first)."""
    rows = []
    for target in ratios:
        res = prune_to_ratio(model, target, tol=tol, method=method)
        rows.append({"target": float(target), "ratio": res.ratio, "params": res.params_after,
                     "threshold": res.threshold, "accuracy": float(evaluate(res.model))})
    return rows


def plot_widths(widths, path, title: str = "Per-layer width before/after CUP") -> None:
    """Bar chart of filters per conv layer / neurons per FC layer before and after pruning (Fig. 6)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from esc2c.fsutil import atomic_path
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
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from esc2c.fsutil import atomic_path
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
