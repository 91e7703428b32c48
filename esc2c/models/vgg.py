"""VGG-11 for log-mel input: 8 conv (BN + ReLU) and 3 fully connected layers, aux heads after conv 1, 2, 4, 6.

Stages are cut so those convs end a stage: [c1] [pool c2] [pool c3 c4] [pool c5 c6] [pool c7 c8]; the
head's global average pool replaces VGG's last max pool (log-mel inputs are small).
"""
from __future__ import annotations

from esc2c.models.builders import plain_stages, scale

CHANNELS = (64, 128, 256, 256, 512, 512, 512, 512)
STAGES = ((0,), (1,), (2, 3), (4, 5), (6, 7))   # conv indices per stage; stages 1.. start with a max pool
HIDDEN = 512


def vgg11_config(num_classes: int, width: float, in_shape: tuple[int, int, int]) -> dict:
    ch = [scale(c, width) for c in CHANNELS]
    stages, cin = plain_stages(ch, STAGES, in_shape)
    taps = [0, 1, 2, 3]
    stage_out = [ch[STAGES[i][-1]] for i in taps]
    hidden = scale(HIDDEN, width)
    return {"arch": "vgg11", "num_classes": num_classes, "in_shape": list(in_shape), "stages": stages,
            "head": {"cin": cin, "hidden": [hidden, hidden], "num_classes": num_classes, "dropout": 0.0},
            "aux_taps": taps, "aux": [{"cin": c, "cmid": c, "num_classes": num_classes} for c in stage_out]}
