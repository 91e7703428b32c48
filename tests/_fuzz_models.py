"""Random small CNNs for the compiler fuzz tests (hypothesis strategies), their INT8 QDQ export by
onnxruntime's quantize_static or by esc2c's own QAT export, and a fast host harness: the emitted model's C
compiled with gcc under AddressSanitizer/UBSan against CMSIS-NN built once (cached) with the same flags."""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import torch
from hypothesis import strategies as st
from torch import nn

from esc2c.compiler.emit import cmsis_paths

SAN = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"]
CFLAGS = ["-std=c99", "-O1", "-g", *SAN]


# ---- random float CNNs --------------------------------------------------------------------------------

def _out(n: int, k: int, s: int, p: int) -> int:
    return (n + 2 * p - k) // s + 1


@st.composite
def cnn_specs(draw):
    """(input shape (C, H, W), layer list, head, n_classes): convolutions (any kernel up to 3x3, 1xN, Nx1,
    strides, padding, groups, depthwise), max/avg pools, residual blocks, ReLU/ReLU6/none, GAP or flatten."""
    c, h, w = draw(st.integers(1, 3)), draw(st.integers(1, 9)), draw(st.integers(2, 12))
    shape = (c, h, w)
    layers = []
    for i in range(draw(st.integers(1, 4))):
        # a convolution first: quantize_static leaves a pool on the float graph input unquantized (which the
        # compiler rightly refuses with one line)
        kind = draw(st.sampled_from(["conv", "group"] if i == 0 else ["conv", "conv", "group", "pool", "res"]))
        act = draw(st.sampled_from(["relu", "relu6", "none"]))
        if kind in ("conv", "group"):
            kh, kw = draw(st.integers(1, min(3, h + 2))), draw(st.integers(1, min(3, w + 2)))
            # padding below the kernel size (the compiler's documented limit), and a window that fits
            ph = draw(st.integers(max(0, (kh - h + 1) // 2), min(1, kh - 1)))
            pw = draw(st.integers(max(0, (kw - w + 1) // 2), min(1, kw - 1)))
            sh, sw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
            if kind == "group":
                g = draw(st.sampled_from([d for d in range(1, c + 1) if c % d == 0]))
                cout = g * draw(st.integers(1, 2))
            else:
                g, cout = 1, draw(st.integers(1, 8))
            layers.append(("conv", cout, (kh, kw), (sh, sw), (ph, pw), g, act))
            c, h, w = cout, _out(h, kh, sh, ph), _out(w, kw, sw, pw)
        elif kind == "pool":
            kh, kw = draw(st.integers(1, min(2, h))), draw(st.integers(1, min(2, w)))
            if kh * kw == 1:
                continue
            sh, sw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
            layers.append(("pool", draw(st.sampled_from(["max", "avg"])), (kh, kw), (sh, sw)))
            h, w = _out(h, kh, sh, 0), _out(w, kw, sw, 0)
        else:
            layers.append(("res", c, act))
    head = draw(st.sampled_from(["gap", "flatten"])) if c * h * w <= 256 else "gap"
    return shape, layers, head, draw(st.integers(2, 5))


class FuzzNet(nn.Module):
    def __init__(self, spec):
        super().__init__()
        (c, h, w), layers, head, n_cls = spec
        self.kinds, mods = [], []
        for L in layers:
            if L[0] == "conv":
                _, cout, k, s, p, g, act = L
                mods.append(nn.Conv2d(c, cout, k, s, p, groups=g))
                self.kinds.append(("conv", act))
                c = cout
            elif L[0] == "pool":
                _, how, k, s = L
                mods.append(nn.MaxPool2d(k, s) if how == "max" else nn.AvgPool2d(k, s))
                self.kinds.append(("pool", None))
            else:
                mods.append(nn.ModuleList([nn.Conv2d(c, c, 3, 1, 1), nn.Conv2d(c, c, 3, 1, 1)]))
                self.kinds.append(("res", L[2]))
        self.mods = nn.ModuleList(mods)
        self.head = head
        with torch.no_grad():
            f = self.features(torch.zeros(1, *spec[0])).flatten(1).shape[1]
        self.fc = nn.Linear(f if head == "flatten" else c, n_cls)

    @staticmethod
    def act(x, how):
        return torch.relu(x) if how == "relu" else torch.clamp(x, 0, 6) if how == "relu6" else x

    def features(self, x):
        for (kind, act), m in zip(self.kinds, self.mods):
            if kind == "conv":
                x = self.act(m(x), act)
            elif kind == "pool":
                x = m(x)
            else:
                x = self.act(m[1](torch.relu(m[0](x))) + x, act)
        return x

    def forward(self, x):
        x = self.features(x)
        x = nn.functional.adaptive_avg_pool2d(x, 1).flatten(1) if self.head == "gap" else x.flatten(1)
        return self.fc(x)


def ort_model(spec, seed: int, path: Path, per_channel: bool, uint8: bool, reduce_range: bool = False) -> Path:
    """The random CNN exported to ONNX and quantized by onnxruntime's quantize_static (QDQ)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    torch.manual_seed(seed)
    model = FuzzNet(spec).eval()
    shape = (1, *spec[0])
    fpath = path.with_suffix(".float.onnx")
    torch.onnx.export(model, (torch.randn(*shape),), str(fpath), input_names=["x"], output_names=["logits"],
                      opset_version=17, dynamo=False)
    rng = np.random.default_rng(seed)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"x": rng.standard_normal(shape).astype(np.float32)} for _ in range(4)])

        def get_next(self):
            return next(self.it, None)

    quantize_static(str(fpath), str(path), Reader(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8 if uint8 else QuantType.QInt8, weight_type=QuantType.QInt8,
                    per_channel=per_channel, reduce_range=reduce_range)
    return path


@st.composite
def escnet_specs(draw):
    """esc2c's own block vocabulary: ConvBNAct (kernels, strides, groups), BasicBlock, pools, Head."""
    h, w = draw(st.integers(4, 12)), draw(st.integers(4, 12))
    c, stages = 1, []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["conv", "block", "pool"]))
        if kind == "conv":
            g = draw(st.sampled_from([d for d in (1, 2, 4) if c % d == 0]))
            cout = g * draw(st.integers(1, 4))
            k = draw(st.sampled_from([1, 3, (1, 3), (3, 1)]))
            s = draw(st.integers(1, 2))
            stages.append(("conv", cout, k, s, g, draw(st.booleans())))
            c = cout
            h, w = (h - 1) // s + 1, (w - 1) // s + 1
        elif kind == "block":
            cout, s = draw(st.integers(2, 8)), draw(st.integers(1, 2))
            stages.append(("block", draw(st.integers(2, 8)), cout, s))
            c = cout
            h, w = (h - 1) // s + 1, (w - 1) // s + 1
        elif h >= 2 and w >= 2:
            stages.append(("pool", draw(st.sampled_from(["max", "avg"]))))
            h, w = h // 2, w // 2
    hidden = draw(st.sampled_from([[], [8]]))
    return (1, draw(st.integers(4, 12)), draw(st.integers(4, 12))), stages, hidden, draw(st.integers(2, 5))


def esc2c_model(spec, seed: int, path: Path) -> Path:
    """The random ESCNet quantized by esc2c (QAT wrapper, calibrated) and exported as QDQ ONNX."""
    from esc2c.models.blocks import BasicBlock, ConvBNAct, ESCNet, Head
    from esc2c.quant import export, qat

    in_shape, stages, hidden, n_cls = spec
    torch.manual_seed(seed)
    c, mods = 1, []
    for s in stages:
        if s[0] == "conv":
            _, cout, k, stride, g, relu = s
            mods.append(nn.Sequential(ConvBNAct(c, cout, k, stride, groups=g, relu=relu)))
            c = cout
        elif s[0] == "block":
            _, cmid, cout, stride = s
            mods.append(nn.Sequential(BasicBlock(c, cmid, cout, stride=stride)))
            c = cout
        else:
            mods.append(nn.Sequential(nn.MaxPool2d(2) if s[1] == "max" else nn.AvgPool2d(2)))
    model = ESCNet(mods, Head(c, hidden, n_cls)).eval()
    x = torch.randn(16, *in_shape)
    q = qat.calibrate(qat.quantize_model(model), [x[:8], x[8:]]).eval()
    export.export_onnx(q, path, in_shape)
    return path


# ---- fast host build under sanitizers ----------------------------------------------------------------

def _cache() -> Path:
    return Path(os.environ.get("ESC2C_CACHE") or Path.home() / ".cache" / "esc2c")


def cmsis_nn_library() -> tuple[Path, list[str]]:
    """(libcmsisnn.a built once with CFLAGS under the cache, the include/define flags a model needs)."""
    nn_path, core = cmsis_paths()
    flags = [f"-I{nn_path / 'Include'}", f"-I{core}"]
    if not (nn_path / "Include" / "Internal" / "arm_nn_compiler.h").is_file():
        flags += ["-D__GNUC_PYTHON__", "-D__RESTRICT=__restrict"]     # CMSIS-NN 4.0.0's plain-C path
    sources = sorted(p for p in (nn_path / "Source").rglob("*.c") if not p.name.endswith(("_f16.c", "_f32.c")))
    h = hashlib.sha256(" ".join(CFLAGS + flags).encode())
    for s in sources:
        h.update(s.read_bytes())
    lib = _cache() / f"fuzz-cmsisnn-{h.hexdigest()[:16]}" / "libcmsisnn.a"
    if not lib.is_file():
        d = lib.parent / f"objs.{os.getpid()}"
        d.mkdir(parents=True, exist_ok=True)
        subprocess.run(["gcc", "-c", *CFLAGS, *flags, *map(str, sources)], cwd=d, check=True, timeout=1200,
                       capture_output=True)
        tmp = lib.with_suffix(f".{os.getpid()}.a")
        subprocess.run(["ar", "rcs", str(tmp), *sorted(map(str, d.glob("*.o")))], check=True, timeout=300)
        os.replace(tmp, lib)
        shutil.rmtree(d, ignore_errors=True)
    return lib, flags


def build_host(project: Path, lib: Path, flags: list[str]) -> Path:
    """The emitted project's host runner (host/main.c) with -Wall -Wextra -Werror under the sanitizers."""
    rt = project / "runtime"
    exe = project / "host_san"
    srcs = [project / "model.c", project / "weights.c", rt / "src" / "esc2c_kernels.c",
            rt / "src" / "esc2c_conv_s8_fast.c", rt / "src" / "esc2c_conv_s8_small.c", project / "host" / "main.c"]
    r = subprocess.run(["gcc", *CFLAGS, "-Wall", "-Wextra", "-Werror", f"-I{project}", f"-I{rt / 'include'}", *flags,
                        *map(str, srcs), str(lib), "-lm", "-o", str(exe)], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return exe
