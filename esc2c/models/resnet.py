"""ResNet-18 for log-mel input: stem conv + max pool, 4 stages x 2 basic blocks (64, 128, 256, 512 x width,
stride 2 at stages 2-4), one FC layer; aux heads after residual stages 1, 2 and 3."""
from __future__ import annotations

from esc2c.models.builders import pool_kernel, scale

CHANNELS = (64, 128, 256, 512)


def resnet18_config(num_classes: int, width: float, in_shape: tuple[int, int, int]) -> dict:
    ch = [scale(c, width) for c in CHANNELS]
    k = pool_kernel(in_shape[1:])
    stem = [{"type": "conv", "cin": in_shape[0], "cout": ch[0], "kernel": [3, 3], "stride": [1, 1],
             "padding": [1, 1], "relu": True},
            {"type": "maxpool", "kernel": k, "stride": k}]
    stages, cin = [stem], ch[0]
    for si, c in enumerate(ch):
        stride = 1 if si == 0 else 2
        blocks = []
        for bi in range(2):
            s = stride if bi == 0 else 1
            blocks.append({"type": "block", "cin": cin, "cmid": c, "cout": c, "stride": s,
                           "shortcut": s != 1 or cin != c})
            cin = c
        stages.append(blocks)
    taps = [1, 2, 3]
    return {"arch": "resnet18", "num_classes": num_classes, "in_shape": list(in_shape), "stages": stages,
            "head": {"cin": cin, "hidden": [], "num_classes": num_classes, "dropout": 0.0},
            "aux_taps": taps, "aux": [{"cin": ch[i - 1], "cmid": ch[i - 1], "num_classes": num_classes}
                                      for i in taps]}
