"""CUP step 1: the channel groups of an ESCNet (sets of channels pruned as one) and who reads/writes them."""
from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from esc2c.errors import Esc2cError
from esc2c.models.blocks import BasicBlock, ConvBNAct, ESCNet


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
