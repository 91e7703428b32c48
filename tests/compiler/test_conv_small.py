"""runtime/src/esc2c_conv_s8_small.c (portable C path, host) against the integer contract: a numpy convolution,
then the max pool the kernel does on its accumulators, requantized by esc2c.quant.intparams (both roundings)
or esc2c.quant.ortparams (the onnxruntime contract's float32 scales); first-layer shapes, odd sizes, strides,
padding on every side, every words-per-channel copy and pool window."""
from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from _conv_ref import conv_acc, random_layer

from esc2c.compiler.ops import conv_small
from esc2c.quant import intparams as ip
from esc2c.quant import ortparams

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "runtime" / "src" / "esc2c_conv_s8_small.c"
MODES = {"double": [], "single": ["-DCMSIS_NN_USE_SINGLE_ROUNDING"], "float": ["-DESC2C_REQUANT_FLOAT",
                                                                             "-ffp-contract=off"]}

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")


@pytest.fixture(scope="module")
def libs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("convsmall")
    out = {}
    for mode, defs in MODES.items():
        so = tmp / f"conv_small_{mode}.so"
        subprocess.run(["gcc", "-O2", "-std=c99", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", *defs,
                        f"-I{ROOT / 'runtime' / 'include'}", str(SRC), "-o", str(so), "-lm"], check=True)
        lib = ctypes.CDLL(str(so))
        lib.esc2c_conv_small_s8.restype = ctypes.c_int
        lib.esc2c_conv_small_s8_buffer_size.restype = ctypes.c_int32
        out[mode] = lib
    return out


def _ptr(a):
    return a.ctypes.data_as(ctypes.c_void_p)


def reference(x, w, bias, mult, shift, in_zp, out_zp, act, stride, pads, conv_hw, pool, mode):
    """conv by the contract (sum((x - in_zp) * w) + bias, requantize, + out_zp, clamp), then max pool
    (kernel = stride = pool, no padding) of the int8 results."""
    cout = w.shape[0]
    oh, ow = conv_hw
    acc = conv_acc(x, w, bias, in_zp, stride, pads, conv_hw)
    if mode == "float":
        y = ortparams.requantize(acc, mult) + out_zp
    else:
        y = ip.requantize(acc, mult, shift, mode) + out_zp
    y = np.clip(y, act[0], act[1])
    ph, pw = pool
    py, px = oh // ph, ow // pw
    y = y[:py * ph, :px * pw].reshape(py, ph, px, pw, cout).max(axis=(1, 3))
    return y.astype(np.int8)


def run_small(lib, x, w, bias, mult, shift, in_zp, out_zp, act, stride, pads, conv_hw, pool, misalign=0):
    h, wd, cin = x.shape
    cout, kh, kw, _ = w.shape
    ph, pw = pool
    out_hw = (conv_hw[0] // ph, conv_hw[1] // pw)
    nbuf = lib.esc2c_conv_small_s8_buffer_size(cin, kh, kw, cout, ph, pw, out_hw[1])
    assert nbuf == conv_small.buffer_size(cin, kh, kw, cout, pool, out_hw[1])
    scratch = np.full(nbuf // 4 + 2, 0x5A5A5A5A, np.uint32)  # garbage: the kernel must not read stale data
    guard = scratch.view(np.uint8)[misalign + nbuf:].copy()
    out = np.zeros(out_hw + (cout,), np.int8)
    x = np.ascontiguousarray(x, np.int8)
    w8 = np.ascontiguousarray(w, np.int8)
    bias32 = np.ascontiguousarray(bias, np.int32)
    m = np.ascontiguousarray(mult, np.float32 if np.issubdtype(np.asarray(mult).dtype, np.floating) else np.int32)
    s32 = np.ascontiguousarray(shift, np.int32)
    i32 = ctypes.c_int32
    rc = lib.esc2c_conv_small_s8(_ptr(x), i32(h), i32(wd), i32(cin), _ptr(w8), _ptr(bias32), _ptr(out),
                                 i32(out_hw[0]), i32(out_hw[1]), i32(cout), i32(kh), i32(kw), i32(stride[0]),
                                 i32(stride[1]), i32(pads[0]), i32(pads[1]), i32(-in_zp), _ptr(m), _ptr(s32),
                                 i32(out_zp), i32(act[0]), i32(act[1]), i32(ph), i32(pw), i32(ph), i32(pw),
                                 ctypes.c_void_p(scratch.ctypes.data + misalign))
    assert rc == 0
    assert np.array_equal(scratch.view(np.uint8)[misalign + nbuf:], guard)  # stays inside its buffer
    return out


# (H, W, C_in, C_out, KH, KW, stride, pads (top, left), conv output (H, W), pool)
SHAPES = [
    (8, 12, 1, 16, 3, 3, (1, 1), (1, 1), (8, 12), (2, 2)),     # the reference model's first layer, smaller
    (7, 9, 1, 16, 3, 3, (1, 1), (1, 1), (7, 9), (2, 2)),       # odd sizes: the last row/column not pooled
    (7, 9, 1, 5, 3, 3, (1, 1), (1, 1), (7, 9), (1, 1)),        # no pooling, odd C_out
    (9, 10, 2, 7, 3, 3, (2, 2), (1, 1), (5, 5), (1, 1)),       # 2 input channels (12 words), stride 2
    (6, 11, 1, 9, 1, 3, (1, 1), (0, 1), (6, 11), (2, 1)),      # 1x3, pool 2x1 (any window)
    (10, 8, 1, 4, 5, 1, (1, 1), (2, 0), (10, 8), (2, 2)),      # 5x1 (10 words)
    (8, 8, 3, 6, 1, 1, (1, 1), (0, 0), (8, 8), (2, 2)),        # 1x1 on 3 channels (2 words)
    (9, 7, 1, 64, 3, 1, (2, 1), (1, 0), (5, 7), (3, 3)),       # 64 channels, 3x1, 3x3 window
    (5, 6, 4, 3, 2, 2, (1, 1), (0, 0), (4, 5), (2, 2)),        # 2x2 on 4 channels (8 words), no padding
    (4, 16, 1, 8, 3, 3, (1, 2), (1, 1), (4, 8), (2, 2)),       # stride (1, 2)
    (7, 9, 4, 6, 3, 3, (1, 1), (1, 1), (7, 9), (2, 2)),        # 4 channels (18 words, a thin second layer)
    (6, 7, 3, 5, 3, 3, (1, 1), (1, 1), (6, 7), (1, 1)),        # 3 channels (18 words: 9 taps per row -> 12)
]


@pytest.mark.parametrize("shape", SHAPES, ids=[f"{s[0]}x{s[1]}x{s[2]}-{s[3]}k{s[4]}x{s[5]}s{s[6][0]}{s[6][1]}"
                                                f"p{s[9][0]}{s[9][1]}" for s in SHAPES])
@pytest.mark.parametrize("mode", list(MODES))
def test_small_conv_equals_contract(libs, shape, mode):
    h, wd, cin, cout, kh, kw, stride, pads, conv_hw, pool = shape
    rng = np.random.default_rng(hash(shape) % 2**32)
    for trial in range(3):
        x, w, bias, reals = random_layer(rng, trial, h, wd, cin, cout, kh, kw)
        if mode == "float":
            mult, shift = reals.astype(np.float32), np.zeros(cout, np.int32)
        else:
            mult, shift = ip.quantize_multiplier(reals)
        in_zp, out_zp = int(rng.integers(-128, 128)), int(rng.integers(-128, 128))
        act = (max(out_zp, -128), 127) if trial == 2 else (-128, 127)
        if trial == 1:
            act = (-100, 90)  # both bounds inside the int8 range
        want = reference(x, w, bias, mult, shift, in_zp, out_zp, act, stride, pads, conv_hw, pool, mode)
        got = run_small(libs[mode], x, w, bias, mult, shift, in_zp, out_zp, act, stride, pads, conv_hw, pool,
                        misalign=trial)  # the memory plan may place the scratch at any byte
        np.testing.assert_array_equal(got, want, err_msg=f"trial {trial}")


def test_every_copy_refuses_other_layers_and_bad_arguments(libs):
    """Each 2x2-window copy runs only its own words-per-channel count and window, the copy for any layer runs
    both; layers beyond the kernel's limits and bad arguments return -1."""
    lib = libs["double"]
    x = np.zeros(64, np.int8)
    w = np.zeros(64 * 45, np.int8)
    m = np.ones(65, np.int32)
    scratch = np.zeros(4096, np.uint32)
    out = np.zeros(256, np.int8)
    i32 = ctypes.c_int32

    def args(cin=1, cout=4, k=3, pool=2, act=(-128, 127), scr=_ptr(scratch)):
        return [_ptr(x), i32(4), i32(4), i32(cin), _ptr(w), None, _ptr(out), i32(2), i32(2), i32(cout), i32(k),
                i32(k), i32(1), i32(1), i32(1), i32(1), i32(0), _ptr(m), _ptr(m), i32(0), i32(act[0]), i32(act[1]),
                i32(pool), i32(pool), i32(pool), i32(pool), scr]

    assert lib.esc2c_conv_small_s8(*args()) == 0
    assert lib.esc2c_conv_small_s8_w6_p4(*args()) == 0          # 3x3 on 1 channel: 6 words, 2x2 window
    assert lib.esc2c_conv_small_s8_w6_p4(*args(pool=1)) == -1   # not its window
    assert lib.esc2c_conv_small_s8_w12_p4(*args()) == -1        # not its word count
    assert lib.esc2c_conv_small_s8_any(*args()) == 0            # any layer
    assert lib.esc2c_conv_small_s8_any(*args(pool=1)) == 0
    assert lib.esc2c_conv_small_s8(*args(cin=5)) == -1          # 3x3 on 5 channels: 24 words, too many
    assert lib.esc2c_conv_small_s8(*args(cout=65)) == -1        # more channels than its table
    assert lib.esc2c_conv_small_s8(*args(act=(10, 0))) == -1    # empty clamp
    assert lib.esc2c_conv_small_s8(*args(scr=None)) == -1       # no scratch
    assert conv_small.words(5, 3, 3) > conv_small.MAX_WORDS and conv_small.words(1, 3, 3) == 6


def _stem_model(case: str):
    """A first layer for each way the small-tap kernel runs, then a fast-kernel conv, a global pool and a FC."""
    import torch
    from torch import nn

    torch.manual_seed(3)
    if case == "p4":      # 1 channel, 3x3, 2x2 max pool in the epilogue (the reference model's first layer, the
        # asm copy), then a thin 4-channel layer (18 words, the C copy)
        shape, stem = (1, 1, 18, 27), [nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                       nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
    elif case == "p4x":   # 4 channels, 3x1, 2x2 max pool: one quad per kernel row, the window's columns sharing
        # their widened rows at two positions (max_dots_w6_p4_shared)
        shape, stem = (1, 4, 12, 15), [nn.Conv2d(4, 6, (3, 1), padding=(1, 0)), nn.ReLU(), nn.MaxPool2d(2)]
    elif case == "pn":    # 2 channels, 5x1, 3x3 max pool in the epilogue (the copy for any layer)
        shape, stem = (1, 2, 16, 20), [nn.Conv2d(2, 6, (5, 1), padding=(2, 0)), nn.ReLU(), nn.MaxPool2d(3)]
    elif case == "p1":    # 1 channel, 3x3 stride 2, no pool
        shape, stem = (1, 1, 17, 23), [nn.Conv2d(1, 5, 3, stride=2, padding=1), nn.ReLU()]
    else:                 # "band": overlapping 3x3 / 2 max pool, band-wise around the kernel
        shape, stem = (1, 1, 15, 22), [nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2)]
    c = [m for m in stem if isinstance(m, nn.Conv2d)][-1].out_channels
    model = nn.Sequential(*stem, nn.Conv2d(c, 10, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(10, 4))
    return model, shape


# case -> (contract, rounding): each copy on the Cortex-M7 under one of the three arithmetics
QEMU_CASES = {"p4": ("tflite", "double"), "p4x": ("tflite", "double"), "pn": ("onnxruntime", None),
              "p1": ("tflite", "single"), "band": ("onnxruntime", None)}


@pytest.mark.skipif(any(shutil.which(t) is None for t in ("cmake", "arm-none-eabi-gcc", "qemu-system-arm")),
                    reason="needs cmake, gcc-arm-none-eabi and qemu-system-arm")
@pytest.mark.parametrize("case", list(QEMU_CASES))
def test_small_kernel_on_cortex_m7_every_layer(tmp_path, case):
    """The DSP path (SXTAB16, SMLAD, SSAT) on QEMU's Cortex-M7 gives the host build's bits on every layer, and
    the host build equals the contract's integer vectors (checked by run_qemu), for each copy of the kernel:
    2x2 and 3x3 pools in its epilogue, no pool, and band-wise conv + pool around it."""
    from _compiler_models import export_float, quantize
    from esc2c.compiler.emit import emit
    from esc2c.device.runner import run_qemu

    model, shape = _stem_model(case)
    f = export_float(model, shape, tmp_path / f"{case}_float.onnx")
    q = quantize(f, tmp_path / f"{case}_int8.onnx", shape)
    contract, rounding = QEMU_CASES[case]
    res = emit(q, tmp_path / "out", board="stm32f746zg", n_vectors=4, contract=contract, rounding=rounding,
               fuse="all")
    stem = res.graph.ops[0]
    assert stem.kernel == conv_small.SMALL_CONV
    assert bool(stem.attrs.get("pool_in_kernel")) == (case in ("p4", "p4x", "pn"))
    assert (stem.kind == "conv_pool") == (case != "p1")
    text = (res.out / "model.c").read_text()
    assert f"{conv_small.SMALL_CONV}_" + ("w6_p4" if case in ("p4", "p4x") else "any") in text
    if case == "p4":
        assert res.graph.ops[1].kernel == conv_small.SMALL_CONV and f"{conv_small.SMALL_CONV}_w18_p4" in text
    report = run_qemu(res.out, vectors=12, debug_layers=True, echo=lambda s: None)
    assert (report.identical, report.vectors, report.layers_checked) == (12, 12, True)
