"""Small INT8 QDQ models for the compiler tests: torch -> ONNX -> onnxruntime quantize_static."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn


class VGGish(nn.Module):
    """7 convs: 3x3 padded, stride 2, 1x3, 3x1, depthwise, 1x1; max pool, avg pool, GAP, FC."""

    def __init__(self, n_cls: int = 5):
        super().__init__()
        r = nn.ReLU
        self.f = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), r(),
            nn.Conv2d(8, 12, 3, stride=2, padding=1), r(),
            nn.MaxPool2d(2, ceil_mode=True),
            nn.Conv2d(12, 16, (1, 3), padding=(0, 1)), r(),
            nn.Conv2d(16, 16, (3, 1), padding=(1, 0)), nn.ReLU6(),
            nn.Conv2d(16, 16, 3, padding=1, groups=16), r(),
            nn.Conv2d(16, 20, 1), r(),
            nn.AvgPool2d(2, stride=1),
            nn.Conv2d(20, 24, 3, padding=1, stride=(2, 1)), r(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(24, n_cls))

    def forward(self, x):
        return self.f(x)


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.sc = nn.Conv2d(cin, cout, 1, stride) if (stride != 1 or cin != cout) else None

    def forward(self, x):
        y = self.c2(torch.relu(self.c1(x)))
        return torch.relu(y + (self.sc(x) if self.sc is not None else x))


class ResNetish(nn.Module):
    """stem + 3 basic blocks (2 with a 1x1 stride-2 shortcut): 9 convs, 3 residual adds, FC on flatten."""

    def __init__(self, n_cls: int = 4):
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, 1, 1)
        self.b1 = Block(8, 8, 1)
        self.b2 = Block(8, 12, 2)
        self.b3 = Block(12, 16, 2)
        self.fc = nn.Linear(16 * 6 * 3, n_cls)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        x = self.b3(self.b2(self.b1(x)))
        return self.fc(torch.flatten(x, 1))


class Strip(nn.Module):
    """Height-1 input with 1xN kernels: CMSIS-NN's arm_convolve_1_x_n_s8 path (output width % 4 == 0)."""

    def __init__(self, n_cls: int = 3):
        super().__init__()
        self.f = nn.Sequential(nn.Conv2d(4, 8, (1, 5), padding=(0, 2)), nn.ReLU(),
                               nn.Conv2d(8, 8, (1, 3), padding=(0, 1)), nn.ReLU(),
                               nn.Conv2d(8, 12, (1, 4), stride=(1, 2), padding=(0, 1)), nn.ReLU(),
                               nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(12, n_cls))

    def forward(self, x):
        return self.f(x)


def export_float(model: nn.Module, shape, path: Path, asym_pad: bool = False) -> Path:
    torch.manual_seed(0)
    model.eval()
    x = torch.randn(*shape)
    torch.onnx.export(model, (x,), str(path), input_names=["x"], output_names=["logits"], opset_version=17,
                      dynamo=False)
    if asym_pad:  # one asymmetric-pad conv (torch never exports those): top/left 1, bottom/right 0
        m = onnx.load(str(path))
        for n in m.graph.node:
            if n.op_type == "Conv":
                for a in n.attribute:
                    if a.name == "pads" and list(a.ints) == [1, 1, 1, 1]:
                        del a.ints[:]
                        a.ints.extend([1, 1, 0, 0])
                        break
                else:
                    continue
                break
        for vi in list(m.graph.value_info):
            m.graph.value_info.remove(vi)
        m = onnx.shape_inference.infer_shapes(m)
        onnx.save(m, str(path))
    return path


def quantize(float_path: Path, out_path: Path, shape, per_channel: bool = True, n_cal: int = 16,
             seed: int = 0, uint8: bool = False, reduce_range: bool = False) -> Path:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    rng = np.random.default_rng(seed)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"x": rng.standard_normal(shape).astype(np.float32)} for _ in range(n_cal)])

        def get_next(self):
            return next(self.it, None)

    quantize_static(str(float_path), str(out_path), Reader(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8 if uint8 else QuantType.QInt8, weight_type=QuantType.QInt8,
                    per_channel=per_channel, reduce_range=reduce_range)
    return out_path


def build(kind: str, tmp: Path, per_channel: bool = True, uint8: bool = False, reduce_range: bool = False,
          seed: int = 1) -> Path:
    tmp = Path(tmp)
    if kind == "vgg":
        shape, model, asym = (1, 1, 20, 13), VGGish(), False
    elif kind == "vgg_asym":
        shape, model, asym = (1, 1, 20, 13), VGGish(), True
    elif kind == "resnet":
        shape, model, asym = (1, 1, 21, 11), ResNetish(), False
    elif kind == "strip":
        shape, model, asym = (1, 4, 1, 32), Strip(), False
    else:
        raise ValueError(kind)
    torch.manual_seed(seed)
    model = type(model)()
    f = export_float(model, shape, tmp / f"{kind}_float{'' if seed == 1 else seed}.onnx", asym_pad=asym)
    tag = ("" if per_channel else "_pt") + ("_u8" if uint8 else "") + ("_rr" if reduce_range else "") + (
        "" if seed == 1 else f"_s{seed}")
    return quantize(f, tmp / f"{kind}_int8{tag}.onnx", shape, per_channel, uint8=uint8, reduce_range=reduce_range,
                    seed=seed - 1)


class Wide(nn.Module):
    """One big fully connected layer: ~1.1 M int8 weights, more than the STM32F746ZG's 1 MB flash."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(1024, 1100)

    def forward(self, x):
        return self.fc(x)


def build_too_big(tmp: Path) -> Path:
    tmp = Path(tmp)
    f = export_float(Wide(), (1, 1024), tmp / "wide_float.onnx")
    return quantize(f, tmp / "wide_int8.onnx", (1, 1024), per_channel=False, n_cal=2)
