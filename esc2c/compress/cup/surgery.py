"""CUP step 5: kept channels copied into a freshly built dense ESCNet, and the result record."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from esc2c.compress.cup.groups import ChannelGroup, channel_groups
from esc2c.errors import Esc2cError
from esc2c.models.blocks import ESCNet
from esc2c.models.counting import count_params
from esc2c.models.registry import build_from_config, layer_widths, model_config


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
    target: int | None = None              # requested kept parameters, when pruned to a size or ratio

    @property
    def ratio(self) -> float:
        """Fraction of deployed parameters removed."""
        return 1.0 - self.params_after / self.params_before

    def summary(self) -> dict:
        return {"threshold": self.threshold, "params_before": self.params_before,
                "params_after": self.params_after, "ratio": self.ratio, "target_params": self.target,
                "widths": [list(w) for w in self.widths]}


def _result(model, pruned, t, keep) -> PruneResult:
    before, after = layer_widths(model), layer_widths(pruned)
    widths = [(n, b, a) for (n, b), (_, a) in zip(before, after)]
    return PruneResult(pruned, float(t), keep, count_params(model), count_params(pruned), widths)
