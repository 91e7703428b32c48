"""A small CNN (5 conv, 16-64 x width channels) that trains in a minute or two on a laptop CPU; the default
for the synthetic sound set. Aux heads after stages 1 and 2."""
from __future__ import annotations

from esc2c.models.registry import pool_kernel, scale

CHANNELS = (16, 32, 32, 64, 64)
STAGES = ((0,), (1,), (2,), (3, 4))   # each stage after the first starts with a max pool


def small_config(num_classes: int, width: float, in_shape: tuple[int, int, int]) -> dict:
    ch = [scale(c, width) for c in CHANNELS]
    hw = in_shape[1:]
    stages, cin = [], in_shape[0]
    for si, convs in enumerate(STAGES):
        layers = []
        if si > 0:
            k = pool_kernel(hw)
            layers.append({"type": "maxpool", "kernel": k, "stride": k})
            hw = (hw[0] // k[0], hw[1] // k[1])
        for ci in convs:
            layers.append({"type": "conv", "cin": cin, "cout": ch[ci], "kernel": [3, 3], "stride": [1, 1],
                           "padding": [1, 1], "relu": True})
            cin = ch[ci]
        stages.append(layers)
    taps = [1, 2]
    return {"arch": "small", "num_classes": num_classes, "in_shape": list(in_shape), "stages": stages,
            "head": {"cin": cin, "hidden": [], "num_classes": num_classes, "dropout": 0.0},
            "aux_taps": taps, "aux": [{"cin": ch[STAGES[i][-1]], "cmid": ch[STAGES[i][-1]],
                                       "num_classes": num_classes} for i in taps]}
