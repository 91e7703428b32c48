"""The building blocks every esc2c model is made of.

This small vocabulary is a contract shared by pruning (which rewrites channel counts), quantization-aware
training (which folds BN, fuses ReLU and inserts fake-quant per block) and export (which maps each block to
ONNX QDQ nodes the compiler understands). A model built from anything else cannot be compressed or deployed.

  ConvBNAct   conv (no bias) -> BatchNorm -> optional ReLU
  BasicBlock  ResNet basic block: ConvBNAct(relu) -> ConvBNAct(none) + shortcut -> ReLU
  nn.MaxPool2d, nn.AvgPool2d (pools inside stages)
  Head        global average pool -> flatten -> [LinearAct(relu)]* -> nn.Linear (logits)
  AuxHead     training-only auxiliary classifier: ConvBNAct(relu) -> global average pool -> nn.Linear

ESCNet holds ``stages`` (nn.ModuleList of nn.Sequential), ``head`` and ``aux_heads`` attached after the
stages listed in ``aux_taps``. ``forward`` returns logits only (deployment view); ``forward_all`` returns
logits, aux logits and the tapped feature maps (training and distillation view).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn


class ConvBNAct(nn.Module):
    def __init__(self, cin: int, cout: int, kernel=3, stride=1, padding=None, groups: int = 1, relu: bool = True):
        super().__init__()
        kernel = (kernel, kernel) if isinstance(kernel, int) else tuple(kernel)
        if padding is None:
            padding = (kernel[0] // 2, kernel[1] // 2)
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.relu = relu

    def forward(self, x):
        x = self.bn(self.conv(x))
        return torch.relu(x) if self.relu else x


class BasicBlock(nn.Module):
    """``shortcut=None`` picks a 1x1 projection only when the stride or channel count changes; pass True to
    force one (a pruned block keeps the projection its unpruned parent had even if cin == cout now)."""

    def __init__(self, cin: int, cmid: int, cout: int, stride: int = 1, shortcut: bool | None = None):
        super().__init__()
        if shortcut is None:
            shortcut = stride != 1 or cin != cout
        if not shortcut and (stride != 1 or cin != cout):
            raise ValueError(f"BasicBlock without projection needs stride 1 and cin == cout (got {cin}->{cout}, "
                             f"stride {stride})")
        self.conv1 = ConvBNAct(cin, cmid, 3, stride=stride, relu=True)
        self.conv2 = ConvBNAct(cmid, cout, 3, stride=1, relu=False)
        self.shortcut = ConvBNAct(cin, cout, 1, stride=stride, padding=0, relu=False) if shortcut else None

    def forward(self, x):
        idn = x if self.shortcut is None else self.shortcut(x)
        return torch.relu(self.conv2(self.conv1(x)) + idn)


class LinearAct(nn.Module):
    def __init__(self, fin: int, fout: int, relu: bool = True):
        super().__init__()
        self.fc = nn.Linear(fin, fout)
        self.relu = relu

    def forward(self, x):
        x = self.fc(x)
        return torch.relu(x) if self.relu else x


class Head(nn.Module):
    """Global average pool -> flatten -> hidden LinearAct layers -> logits Linear."""

    def __init__(self, cin: int, hidden: list[int], num_classes: int, dropout: float = 0.0):
        super().__init__()
        layers: list[nn.Module] = []
        f = cin
        for h in hidden:
            layers.append(LinearAct(f, h, relu=True))
            f = h
        self.hidden = nn.ModuleList(layers)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(f, num_classes)

    def forward(self, x):
        x = torch.flatten(torch.mean(x, dim=(2, 3), keepdim=True), 1)
        for layer in self.hidden:
            x = self.dropout(layer(x))
        return self.fc(x)


class AuxHead(nn.Module):
    def __init__(self, cin: int, cmid: int, num_classes: int):
        super().__init__()
        self.conv = ConvBNAct(cin, cmid, 3, relu=True)
        self.fc = nn.Linear(cmid, num_classes)

    def forward(self, x):
        x = self.conv(x)
        return self.fc(torch.flatten(torch.mean(x, dim=(2, 3)), 1))


@dataclass
class ModelOutput:
    logits: torch.Tensor
    aux_logits: list = field(default_factory=list)
    features: list = field(default_factory=list)


class ESCNet(nn.Module):
    def __init__(self, stages: list[nn.Sequential], head: Head, aux_taps: tuple[int, ...] = (),
                 aux_heads: list[AuxHead] | None = None, name: str = "escnet"):
        super().__init__()
        self.stages = nn.ModuleList(stages)
        self.head = head
        self.aux_taps = tuple(aux_taps)
        self.aux_heads = nn.ModuleList(aux_heads or [])
        self.arch = name
        if self.aux_heads and len(self.aux_heads) != len(self.aux_taps):
            raise ValueError("one aux head per aux tap")

    def forward(self, x):
        for stage in self.stages:
            x = stage(x)
        return self.head(x)

    def forward_all(self, x) -> ModelOutput:
        feats, aux = [], []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.aux_taps:
                feats.append(x)
        if self.aux_heads:
            aux = [h(f) for h, f in zip(self.aux_heads, feats)]
        return ModelOutput(self.head(x), aux, feats)

    def drop_aux_heads(self) -> "ESCNet":
        self.aux_heads = nn.ModuleList()
        return self
