"""A small CNN (5 conv, 16-64 x width channels) that trains in a minute or two on a laptop CPU; the default
for the synthetic sound set. Aux heads after stages 1 and 2."""
from __future__ import annotations

from esc2c.models.builders import plain_stages, scale

CHANNELS = (16, 32, 32, 64, 64)
STAGES = ((0,), (1,), (2,), (3, 4))   # each stage after the first starts with a max pool


def small_config(num_classes: int, width: float, in_shape: tuple[int, int, int]) -> dict:
    ch = [scale(c, width) for c in CHANNELS]
    stages, cin = plain_stages(ch, STAGES, in_shape)
    taps = [1, 2]
    return {"arch": "small", "num_classes": num_classes, "in_shape": list(in_shape), "stages": stages,
            "head": {"cin": cin, "hidden": [], "num_classes": num_classes, "dropout": 0.0},
            "aux_taps": taps, "aux": [{"cin": ch[STAGES[i][-1]], "cmid": ch[STAGES[i][-1]],
                                       "num_classes": num_classes} for i in taps]}
