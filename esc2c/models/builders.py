"""Config builders the architectures share (esc2c.models.vgg, resnet, small): channel scaling, pool sizes,
conv layer and plain-stage configs. The layout of a config is described in :mod:`esc2c.models.registry`."""
from __future__ import annotations


def scale(c: int, width: float) -> int:
    """Channel count ``c`` scaled by a width multiplier (at least 1)."""
    return max(1, int(round(c * width)))


def pool_kernel(hw: tuple[int, int]) -> list[int]:
    """A 2x2 pool, degraded to 1 along a dimension that is already 1 (short inputs keep working)."""
    return [2 if hw[0] >= 2 else 1, 2 if hw[1] >= 2 else 1]


def conv3x3(cin: int, cout: int) -> dict:
    """Config of a 3x3 'same' ConvBNAct with ReLU."""
    return {"type": "conv", "cin": cin, "cout": cout, "kernel": [3, 3], "stride": [1, 1], "padding": [1, 1],
            "relu": True}


def plain_stages(channels: list[int], stages: tuple[tuple[int, ...], ...],
                 in_shape: tuple[int, int, int]) -> tuple[list[list[dict]], int]:
    """Stage configs of a plain (VGG-like) CNN: conv indices per stage, every stage after the first opening
    with a max pool sized for the feature map. Returns the stages and the last stage's channel count."""
    hw = in_shape[1:]
    out, cin = [], in_shape[0]
    for si, convs in enumerate(stages):
        layers = []
        if si > 0:
            k = pool_kernel(hw)
            layers.append({"type": "maxpool", "kernel": k, "stride": k})
            hw = (hw[0] // k[0], hw[1] // k[1])
        for ci in convs:
            layers.append(conv3x3(cin, channels[ci]))
            cin = channels[ci]
        out.append(layers)
    return out, cin
