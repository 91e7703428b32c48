"""Build models by name, and describe any model as a plain config dict that rebuilds it.

A config lists every layer with its channel counts, so it also describes pruned models whose widths are no
longer a uniform multiple of the architecture's defaults. Checkpoints store ``model_config(model)`` next to the
state dict; ``build_from_config`` rebuilds the exact module tree the state dict belongs to.

Config layout::

    {"arch": "vgg11", "num_classes": 10, "in_shape": [1, 64, 128],
     "stages": [[layer, ...], ...],            # one list per stage
     "head": {"cin": C, "hidden": [H, ...], "num_classes": N, "dropout": 0.0},
     "aux_taps": [i, ...],                      # stage indices whose output feeds an aux head
     "aux": [{"cin": C, "cmid": M, "num_classes": N}, ...]}

    layer = {"type": "conv", "cin", "cout", "kernel": [kh, kw], "stride": [sh, sw], "padding": [ph, pw], "relu"}
          | {"type": "block", "cin", "cmid", "cout", "stride", "shortcut": bool}
          | {"type": "maxpool" | "avgpool", "kernel": [kh, kw], "stride": [sh, sw]}
"""
from __future__ import annotations

import copy

from torch import nn

from esc2c.contract import ARCHS
from esc2c.errors import Esc2cError
from esc2c.models.blocks import AuxHead, BasicBlock, ConvBNAct, ESCNet, Head
from esc2c.models.resnet import resnet18_config
from esc2c.models.small import small_config
from esc2c.models.vgg import vgg11_config

# architecture name (esc2c.contract.ARCHS) -> config builder (num_classes, width, in_shape) -> config dict
ARCH_CONFIGS = {"vgg11": vgg11_config, "resnet18": resnet18_config, "small": small_config}


def _pair(v) -> list[int]:
    return [int(v), int(v)] if isinstance(v, int) else [int(a) for a in v]


def build_model(arch: str, num_classes: int, width: float = 1.0, in_shape=(1, 64, 128),
                aux: bool = True, dropout: float = 0.0) -> ESCNet:
    """A fresh model of architecture ``arch`` ("vgg11", "resnet18" or "small") for input [B, *in_shape];
    ``dropout`` > 0 drops that fraction after each hidden layer of the head (VGG-11's two)."""
    if arch not in ARCHS:
        raise Esc2cError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHS)}")
    if width <= 0:
        raise Esc2cError(f"model width must be > 0 (got {width})")
    if num_classes < 2:
        raise Esc2cError(f"num_classes must be >= 2 (got {num_classes})")
    if len(in_shape) != 3 or in_shape[0] != 1 or min(in_shape) < 1:
        raise Esc2cError(f"model input shape must be (1, n_mels, frames) (got {tuple(in_shape)})")
    if not 0.0 <= dropout < 1.0:
        raise Esc2cError(f"dropout must be in [0, 1) (got {dropout})")
    cfg = ARCH_CONFIGS[arch](num_classes, width, tuple(int(v) for v in in_shape))
    if dropout > 0:
        if not cfg["head"]["hidden"]:
            raise Esc2cError(f"dropout: the {arch} head has no hidden layers to drop from (vgg11 has two)")
        cfg["head"]["dropout"] = float(dropout)
    if not aux:
        cfg["aux_taps"], cfg["aux"] = [], []
    return build_from_config(cfg)


def _build_layer(layer: dict) -> nn.Module:
    t = layer["type"]
    if t == "conv":
        return ConvBNAct(layer["cin"], layer["cout"], tuple(layer["kernel"]), stride=tuple(layer["stride"]),
                         padding=tuple(layer["padding"]), relu=bool(layer["relu"]))
    if t == "block":
        return BasicBlock(layer["cin"], layer["cmid"], layer["cout"], stride=layer["stride"],
                          shortcut=bool(layer["shortcut"]))
    if t == "maxpool":
        return nn.MaxPool2d(tuple(layer["kernel"]), tuple(layer["stride"]))
    if t == "avgpool":
        return nn.AvgPool2d(tuple(layer["kernel"]), tuple(layer["stride"]))
    raise Esc2cError(f"model config: unknown layer type {t!r}")


def build_from_config(cfg: dict) -> ESCNet:
    """Rebuild the module tree described by ``cfg`` (weights freshly initialised)."""
    try:
        stages = [nn.Sequential(*[_build_layer(layer) for layer in stage]) for stage in cfg["stages"]]
        h = cfg["head"]
        head = Head(h["cin"], list(h["hidden"]), h["num_classes"], dropout=h.get("dropout", 0.0))
        aux = [AuxHead(a["cin"], a["cmid"], a["num_classes"]) for a in cfg.get("aux", [])]
        model = ESCNet(stages, head, tuple(cfg.get("aux_taps", [])) if aux else (), aux, name=cfg["arch"])
    except KeyError as e:
        raise Esc2cError(f"model config: missing field {e.args[0]!r}") from None
    model.num_classes = int(h["num_classes"])
    model.in_shape = tuple(cfg["in_shape"])
    return model


def _layer_config(m: nn.Module) -> dict:
    if isinstance(m, ConvBNAct):
        c = m.conv
        return {"type": "conv", "cin": c.in_channels, "cout": c.out_channels, "kernel": _pair(c.kernel_size),
                "stride": _pair(c.stride), "padding": _pair(c.padding), "relu": bool(m.relu)}
    if isinstance(m, BasicBlock):
        return {"type": "block", "cin": m.conv1.conv.in_channels, "cmid": m.conv1.conv.out_channels,
                "cout": m.conv2.conv.out_channels, "stride": _pair(m.conv1.conv.stride)[0],
                "shortcut": m.shortcut is not None}
    if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
        return {"type": "maxpool" if isinstance(m, nn.MaxPool2d) else "avgpool",
                "kernel": _pair(m.kernel_size), "stride": _pair(m.stride)}
    raise Esc2cError(f"model contains {type(m).__name__}, which is not an esc2c block")


def model_config(model: ESCNet) -> dict:
    """The config that rebuilds ``model`` (per-layer widths included), read from its modules."""
    if not isinstance(model, ESCNet):
        raise Esc2cError(f"expected an ESCNet, got {type(model).__name__}")
    head = model.head
    cin = head.hidden[0].fc.in_features if len(head.hidden) else head.fc.in_features
    dropout = head.dropout.p if isinstance(head.dropout, nn.Dropout) else 0.0
    cfg = {
        "arch": model.arch,
        "num_classes": head.fc.out_features,
        "in_shape": list(getattr(model, "in_shape", ())),
        "stages": [[_layer_config(m) for m in stage] for stage in model.stages],
        "head": {"cin": cin, "hidden": [layer.fc.out_features for layer in head.hidden],
                 "num_classes": head.fc.out_features, "dropout": dropout},
        "aux_taps": list(model.aux_taps) if len(model.aux_heads) else [],
        "aux": [{"cin": a.conv.conv.in_channels, "cmid": a.conv.conv.out_channels,
                 "num_classes": a.fc.out_features} for a in model.aux_heads],
    }
    return copy.deepcopy(cfg)


def layer_widths(model: ESCNet) -> list[tuple[str, int]]:
    """(name, width) of every conv filter bank and hidden FC layer on the deployed path, in order."""
    rows: list[tuple[str, int]] = []
    for name, m in model.named_modules():
        if name.startswith("aux_heads"):
            continue
        if isinstance(m, nn.Conv2d):
            rows.append((name.removesuffix(".conv"), m.out_channels))
        elif isinstance(m, nn.Linear):
            rows.append((name.removesuffix(".fc") if name != "head.fc" else name, m.out_features))
    return rows
