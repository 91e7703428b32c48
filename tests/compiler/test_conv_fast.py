"""runtime/src/esc2c_conv_s8_fast.c (portable C path, host) against the integer contract: a numpy
convolution requantized by esc2c.quant.intparams, both rounding modes, odd shapes, both entry points (int16
weights, and int8 ones: esc2c_conv_fast_s8_w8); weights laid out by esc2c.compiler.ops.conv_fast.pack_weights."""
from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from _conv_ref import conv_acc, random_layer

from esc2c import contract
from esc2c.compiler.ops import conv_fast, conv_small
from esc2c.quant import intparams as ip

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "runtime" / "src" / "esc2c_conv_s8_fast.c"

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")


@pytest.fixture(scope="module")
def libs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("convfast")
    out = {}
    for mode in contract.ROUNDING_MODES:
        so = tmp / f"conv_fast_{mode}.so"
        defs = ["-DCMSIS_NN_USE_SINGLE_ROUNDING"] if mode == "single" else []
        subprocess.run(["gcc", "-O2", "-std=c99", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", *defs,
                        f"-I{ROOT / 'runtime' / 'include'}", str(SRC), "-o", str(so)], check=True)
        lib = ctypes.CDLL(str(so))
        lib.esc2c_conv_fast_s8.restype = ctypes.c_int
        lib.esc2c_conv_fast_s8_w8.restype = ctypes.c_int
        lib.esc2c_conv_fast_s8_buffer_size.restype = ctypes.c_int32
        lib.esc2c_conv_fast_s8_weights_len.restype = ctypes.c_int32
        out[mode] = lib
    return out


def _ptr(a):
    return a.ctypes.data_as(ctypes.c_void_p)


def reference(x, w, bias, mult, shift, in_zp, out_zp, act, stride, pads, out_hw, mode):
    """int8 NHWC conv by the contract: sum((x - in_zp) * w) + bias, requantize, + out_zp, clamp."""
    acc = conv_acc(x, w, bias, in_zp, stride, pads, out_hw)
    y = ip.requantize(acc, mult, shift, mode) + out_zp
    return np.clip(y, act[0], act[1]).astype(np.int8)


def run_fast(lib, x, w, bias, mult, shift, in_zp, out_zp, act, stride, pads, out_hw, misalign=0, w8=False):
    h, wd, cin = x.shape
    cout, kh, kw, _ = w.shape
    packed = conv_fast.pack_weights(w, w8=w8)
    assert packed.dtype == (np.int8 if w8 else np.int16)
    assert packed.size == lib.esc2c_conv_fast_s8_weights_len(cin, cout, kh, kw)
    nbuf = lib.esc2c_conv_fast_s8_buffer_size(cin, kh, kw)
    assert nbuf == conv_fast.buffer_size(cin, kh, kw)
    scratch = np.full(nbuf // 4 + 2, 0x5A5A5A5A, np.uint32)  # garbage: the kernel must not read stale data
    guard = scratch.view(np.uint8)[misalign + nbuf:].copy()
    out = np.zeros(out_hw + (cout,), np.int8)
    x = np.ascontiguousarray(x, np.int8)
    bias32 = np.ascontiguousarray(bias, np.int32)
    m32, s32 = np.ascontiguousarray(mult, np.int32), np.ascontiguousarray(shift, np.int32)
    i32 = ctypes.c_int32
    fn = lib.esc2c_conv_fast_s8_w8 if w8 else lib.esc2c_conv_fast_s8
    rc = fn(_ptr(x), i32(h), i32(wd), i32(cin), _ptr(packed), _ptr(bias32), _ptr(out),
                                i32(out_hw[0]), i32(out_hw[1]), i32(cout), i32(kh), i32(kw), i32(stride[0]),
                                i32(stride[1]), i32(pads[0]), i32(pads[1]), i32(-in_zp), _ptr(m32), _ptr(s32),
                                i32(out_zp), i32(act[0]), i32(act[1]), ctypes.c_void_p(scratch.ctypes.data + misalign))
    assert rc == 0
    assert np.array_equal(scratch.view(np.uint8)[misalign + nbuf:], guard)  # stays inside its buffer
    return out


# (H, W, C_in, C_out, KH, KW, stride, pads (top, left), output (H, W))
SHAPES = [
    (7, 9, 1, 16, 3, 3, (1, 1), (1, 1), (7, 9)),        # first conv: 1 input channel, 9 taps padded to 12
    (6, 5, 5, 7, 3, 3, (2, 2), (1, 1), (3, 3)),         # stride 2, C_in and C_out odd
    (5, 8, 8, 6, 3, 1, (1, 1), (1, 0), (5, 8)),         # 3x1 (non-square kernel)
    (4, 7, 12, 3, 1, 3, (1, 2), (0, 1), (4, 4)),        # 1x3, stride (1, 2)
    (4, 4, 12, 9, 1, 1, (1, 1), (0, 0), (4, 4)),        # 1x1
    (9, 7, 3, 5, 5, 3, (2, 1), (2, 1), (5, 7)),         # 5x3, C_in 3
    (6, 6, 16, 8, 3, 3, (1, 1), (0, 0), (4, 4)),        # no padding
    (5, 6, 8, 4, 3, 3, (2, 2), (0, 0), (3, 3)),         # asymmetric padding: trailing pad only
    (1, 11, 4, 10, 1, 5, (1, 1), (0, 2), (1, 11)),      # height 1
    (3, 4, 4, 131, 1, 1, (1, 1), (0, 0), (3, 4)),       # more channels than one requantization table (128)
    (5, 13, 4, 6, 3, 3, (2, 2), (1, 1), (3, 7)),        # stride 2: whole steps inside a row (the 3-pixel im2col)
    (4, 12, 3, 5, 3, 3, (1, 1), (0, 0), (2, 10)),       # C_in 3: the last step's 4-byte reads near the tensor end
]


@pytest.mark.parametrize("shape", SHAPES, ids=[f"{s[0]}x{s[1]}x{s[2]}-{s[3]}k{s[4]}x{s[5]}s{s[6][0]}{s[6][1]}"
                                                for s in SHAPES])
@pytest.mark.parametrize("mode", contract.ROUNDING_MODES)
@pytest.mark.parametrize("w8", [False, True], ids=["int16w", "int8w"])
def test_fast_conv_equals_contract(libs, shape, mode, w8):
    h, wd, cin, cout, kh, kw, stride, pads, out_hw = shape
    rng = np.random.default_rng(hash(shape) % 2**32)
    for trial in range(3):
        x, w, bias, reals = random_layer(rng, trial, h, wd, cin, cout, kh, kw)
        mult, shift = ip.quantize_multiplier(reals)
        in_zp, out_zp = int(rng.integers(-128, 128)), int(rng.integers(-128, 128))
        act = (out_zp, 127) if trial == 2 else (-128, 127)
        want = reference(x, w, bias, mult, shift, in_zp, out_zp, act, stride, pads, out_hw, mode)
        got = run_fast(libs[mode], x, w, bias, mult, shift, in_zp, out_zp, act, stride, pads, out_hw,
                       misalign=trial, w8=w8)  # the memory plan may place the scratch at any byte
        np.testing.assert_array_equal(got, want, err_msg=f"trial {trial}")


@pytest.mark.parametrize("mode", contract.ROUNDING_MODES)
def test_requantization_ties_match_contract(libs, mode):
    """1x1 conv with one tap and weight 1: the accumulator is the input, so every rounding tie of the
    requantization is exercised (x * 2^-n for small n) in both modes."""
    vals = np.arange(-255, 256)
    n = vals.size
    x = (vals[:, None] // 2).clip(-128, 127)  # h = n pixels of 1 channel
    x = np.repeat(x, 1, axis=1).reshape(n, 1, 1)
    w = np.ones((4, 1, 1, 1), np.int64)
    bias = np.array([0, 1, -1, 3])
    mult, shift = ip.quantize_multiplier(np.array([0.5, 0.25, 0.125, 2.0 ** -5]))
    want = reference(x, w, bias, mult, shift, 0, 0, (-128, 127), (1, 1), (0, 0), (n, 1), mode)
    got = run_fast(libs[mode], x, w, bias, mult, shift, 0, 0, (-128, 127), (1, 1), (0, 0), (n, 1))
    np.testing.assert_array_equal(got, want)


def test_int8_layout_holds_the_int16_values():
    """The int8 layout is the int16 one with each word's channels and taps interleaved: (c0 t, c1 t, c0 t+2,
    c1 t+2) per 4 bytes against (c0 t, c0 t+2), (c1 t, c1 t+2) per two int16 words, extremes included."""
    rng = np.random.default_rng(7)
    for shape in [(5, 3, 3, 3), (4, 1, 1, 12), (1, 3, 3, 1), (7, 1, 5, 6)]:
        w = rng.integers(-128, 128, size=shape)
        w.flat[0], w.flat[-1] = -128, 127
        p16, p8 = conv_fast.pack_weights(w), conv_fast.pack_weights(w, w8=True)
        assert p8.dtype == np.int8 and p8.size == p16.size
        q16, q8 = p16.reshape(-1, 2, 2), p8.reshape(-1, 2, 2)  # per word: [channel][lo, hi] / [lo, hi][channel]
        np.testing.assert_array_equal(q8.transpose(0, 2, 1), q16)


def test_bad_arguments_are_refused(libs):
    lib = libs["double"]
    x = np.zeros(16, np.int8)
    w = np.zeros(64, np.int16)
    m = np.ones(4, np.int32)
    scratch = np.zeros(64, np.uint32)
    out = np.zeros(16, np.int8)
    i32 = ctypes.c_int32
    args = [_ptr(x), i32(2), i32(2), i32(4), _ptr(w), None, _ptr(out), i32(2), i32(2), i32(4), i32(1), i32(1),
            i32(1), i32(1), i32(0), i32(0), i32(0), _ptr(m), _ptr(m), i32(0), i32(-128), i32(127)]
    assert lib.esc2c_conv_fast_s8(*args, _ptr(scratch)) == 0
    assert lib.esc2c_conv_fast_s8(*args, None) == -1  # no scratch
    assert lib.esc2c_conv_fast_s8_w8(*args, _ptr(scratch)) == 0
    assert lib.esc2c_conv_fast_s8_w8(*args, None) == -1
    args[4] = ctypes.c_void_p(w.ctypes.data + 2)
    assert lib.esc2c_conv_fast_s8(*args, _ptr(scratch)) == -1  # weights not 4-byte aligned
    assert lib.esc2c_conv_fast_s8_w8(*args, _ptr(scratch)) == -1


@pytest.mark.skipif(any(shutil.which(t) is None for t in ("cmake", "arm-none-eabi-gcc", "qemu-system-arm")),
                    reason="needs cmake, gcc-arm-none-eabi and qemu-system-arm")
@pytest.mark.parametrize("rounding,weights,build_type", [("double", "int16", "Release"), ("single", "int16", "Release"),
                                                         ("double", "int8", "Release"),
                                                         ("double", "int16", "MinSizeRel"),
                                                         ("double", "int8", "MinSizeRel")])
def test_fast_kernel_on_cortex_m7_every_layer(tmp_path, rounding, weights, build_type):
    """The DSP (SMLAD) path on QEMU's Cortex-M7 gives the host build's bits on every layer for a model with a 1-channel first conv, stride 2 and (2, 1), 1x3, 3x1, 1x1 kernels, odd channel counts
    and asymmetric padding, with int16 weights and (a flash limit no int16 layer fits) with int8 ones
    (SXTB16), and built for size (-Os, where the dot loops keep -O2 to have their registers); the host build
    itself equals the integer ONNX vectors (checked by run_qemu)."""
    from _compiler_models import build
    from esc2c.compiler.emit import emit
    from esc2c.compiler.footprint import CODE_BYTES
    from esc2c.device.build import WORK, elf_symbol
    from esc2c.device.runner import run_qemu

    res = emit(build("vgg_asym", tmp_path), tmp_path / "out", board="stm32f746zg", n_vectors=4, kernels="fast",
               rounding=rounding, max_flash=CODE_BYTES + 1 if weights == "int8" else None)
    fn = conv_fast.FAST_CONV if weights == "int16" else conv_fast.FAST_CONV_W8
    assert not any(op.kernel in conv_fast.KERNELS and op.kernel != fn for op in res.graph.ops)
    fast = [op for op in res.graph.ops if op.kernel == fn]
    assert len(fast) >= 5 and {op.attrs["kernel"] for op in fast} >= {(3, 3), (1, 3), (3, 1), (1, 1)}
    report = run_qemu(res.out, vectors=20, debug_layers=True, echo=lambda s: None, build_type=build_type)
    assert (report.identical, report.vectors, report.layers_checked) == (20, 20, True)
    # the firmware holds the DSP loop of its weight width (an unoptimised build would hold the portable C)
    elf = res.out / WORK / "build-mps2-an500" / "firmware.elf"
    assert elf_symbol(elf, "dot_pairs_long8" if weights == "int8" else "dot_pairs_long")


class _Deep(torch.nn.Module):
    """A 3x3 conv over 72 channels: 648 padded taps, 324 words per column, past the straight run of
    ESC2C_DOT_LONG (288) steps, so the chunked dot loops (96 steps for int16 weights, 32 for int8) run."""

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Conv2d(1, 72, 3, padding=1)
        self.b = torch.nn.Conv2d(72, 10, 3, padding=1)
        self.fc = torch.nn.Linear(10, 3)

    def forward(self, x):
        x = torch.relu(self.b(torch.relu(self.a(x))))
        return self.fc(torch.flatten(torch.nn.functional.adaptive_avg_pool2d(x, 1), 1))


@pytest.mark.skipif(any(shutil.which(t) is None for t in ("cmake", "arm-none-eabi-gcc", "qemu-system-arm")),
                    reason="needs cmake, gcc-arm-none-eabi and qemu-system-arm")
@pytest.mark.parametrize("weights", ["int16", "int8"])
def test_long_columns_on_cortex_m7(tmp_path, weights):
    """Columns longer than the straight run take the chunked loop on the DSP path: every layer's bits on
    QEMU's Cortex-M7 equal the host build's (and the host's the integer ONNX vectors)."""
    from _compiler_models import export_float, quantize
    from esc2c.compiler.emit import emit
    from esc2c.compiler.footprint import CODE_BYTES
    from esc2c.device.runner import run_qemu

    torch.manual_seed(0)
    shape = (1, 1, 5, 7)
    q = quantize(export_float(_Deep().eval(), shape, tmp_path / "f.onnx"), tmp_path / "q.onnx", shape, n_cal=4)
    res = emit(q, tmp_path / "out", board="stm32f746zg", n_vectors=2, kernels="fast",
               max_flash=CODE_BYTES + 1 if weights == "int8" else None)
    fn = conv_fast.FAST_CONV if weights == "int16" else conv_fast.FAST_CONV_W8
    long_ops = [op for op in res.graph.ops if op.kernel == fn and op.weights.shape[3] == 72]
    assert len(long_ops) == 1 and conv_fast.padded_taps(72, 3, 3) // 2 == 324
    report = run_qemu(res.out, vectors=8, debug_layers=True, echo=lambda s: None)
    assert (report.identical, report.vectors, report.layers_checked) == (8, 8, True)


def test_kernel_choice_selection_scratch_and_flash(tmp_path, capsys):
    """`--kernels fast` (default) puts every plain conv on the fast kernel with its scratch size and int16
    weights counted in flash, except first layers (few input channels), which run the small-tap kernel on
    int8 weights; `--kernels cmsis` keeps CMSIS-NN everywhere; bad choices are refused."""
    from _compiler_models import build
    from esc2c.cli import main as cli_main
    from esc2c.compiler.driver import compile_model
    from esc2c.compiler.emit import check_fit, emit
    from esc2c.errors import Esc2cError

    model = build("vgg", tmp_path)
    fast, ref = compile_model(model, fuse="none"), compile_model(model, "cmsis", fuse="none")
    n_small = 0
    for a, b in zip(fast.ops, ref.ops):
        plain = a.kind == "conv" and a.attrs.get("group", 1) == 1
        small = plain and conv_small.applies(a, fast.tensors[a.inputs[0]].shape[3])
        n_small += small
        assert (a.kernel == conv_fast.FAST_CONV) == (plain and not small), a.name
        assert (a.kernel == conv_small.SMALL_CONV) == small, a.name
        assert b.kernel not in (conv_fast.FAST_CONV, conv_small.SMALL_CONV)
        if small:
            kh, kw = a.attrs["kernel"]
            assert a.scratch == conv_small.buffer_size(fast.tensors[a.inputs[0]].shape[3], kh, kw, a.weights.shape[0])
        elif plain:
            kh, kw = a.attrs["kernel"]
            assert a.scratch == conv_fast.buffer_size(fast.tensors[a.inputs[0]].shape[3], kh, kw)
    assert any(op.kind == "depthwise_conv" for op in fast.ops) and fast.ops[-1].kernel != conv_fast.FAST_CONV
    extra = sum(conv_fast.packed_bytes(op) - op.weights.size for op in fast.ops if op.kernel == conv_fast.FAST_CONV)
    assert extra > 0 and check_fit(fast, "stm32f746zg")["flash"] == check_fit(ref, "stm32f746zg")["flash"] + extra

    assert cli_main(["emit", str(model), "-o", str(tmp_path / "c"), "--kernels", "cmsis"]) == 0
    assert "esc2c_conv_fast_s8(" not in (tmp_path / "c" / "model.c").read_text()
    assert cli_main(["emit", str(model), "-o", str(tmp_path / "f")]) == 0
    text = (tmp_path / "f" / "model.c").read_text()
    assert text.count("esc2c_conv_fast_s8(") == sum(op.kernel == conv_fast.FAST_CONV for op in fast.ops)
    assert n_small == 1 and text.count("esc2c_conv_small_s8_any(") == n_small  # the 1-channel first conv (no pool)
    weights = (tmp_path / "f" / "weights.c").read_text()
    assert "const int8_t esc2c_w0" in weights and "const int16_t esc2c_w1" in weights  # small, then fast
    with pytest.raises(Esc2cError, match="kernels must be one of"):
        emit(model, tmp_path / "x", kernels="fastest")
    assert not (tmp_path / "x").exists()
