"""esc2c_max_pool_2x2_s8 (runtime/src/esc2c_kernels.c): the portable path on the host against numpy, and the
DSP path (SSUB8/SEL) on QEMU's Cortex-M7 inside emitted models, fused band-wise after the fast conv and alone."""
from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
I32 = ctypes.c_int32

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    so = tmp_path_factory.mktemp("maxpool") / "kernels.so"
    subprocess.run(["gcc", "-O2", "-std=c99", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC",
                    f"-I{ROOT / 'runtime' / 'include'}", str(ROOT / "runtime" / "src" / "esc2c_kernels.c"),
                    "-o", str(so), "-lm"], check=True)
    lib = ctypes.CDLL(str(so))
    lib.esc2c_max_pool_2x2_s8.restype = ctypes.c_int
    return lib


def _ptr(a):
    return a.ctypes.data_as(ctypes.c_void_p)


def reference(x, out_hw, act):
    oh, ow = out_hw
    c = x.shape[2]
    y = x[:2 * oh, :2 * ow].reshape(oh, 2, ow, 2, c).max(axis=(1, 3))
    return np.clip(y, act[0], act[1]).astype(np.int8)


def call(lib, x, out, out_hw, act):
    h, w, c = x.shape
    return lib.esc2c_max_pool_2x2_s8(_ptr(x), I32(h), I32(w), I32(c), _ptr(out),
                                     I32(out_hw[0]), I32(out_hw[1]), I32(act[0]), I32(act[1]))


# (H, W, C, act): odd rows and columns left over, channel counts with every tail (C mod 4), clamps
SHAPES = [(2, 2, 1, (-128, 127)), (4, 6, 4, (-128, 127)), (5, 7, 3, (-128, 127)), (8, 9, 5, (-3, 127)),
          (6, 4, 16, (-128, 20)), (7, 11, 37, (-50, 60)), (3, 3, 7, (0, 0)), (2, 64, 32, (-128, 127))]


@pytest.mark.parametrize("shape", SHAPES)
def test_max_pool_2x2_equals_numpy(lib, shape):
    h, w, c, act = shape
    rng = np.random.default_rng(h * 100 + w * 10 + c)
    out_hw = (h // 2, w // 2)
    for trial in range(3):
        x = rng.integers(-128, 128, (h, w, c), dtype=np.int8)
        if trial == 1:
            x[::2] = -128                          # the maximum in the second row of each window
        ref = reference(x, out_hw, act)
        buf = np.full(ref.size + 8, 0x5A, np.int8)
        assert call(lib, x, buf, out_hw, act) == 0
        np.testing.assert_array_equal(buf[:ref.size].reshape(ref.shape), ref)
        assert (buf[ref.size:] == 0x5A).all()      # nothing written past the output


@pytest.mark.parametrize("c", [4, 6])
def test_max_pool_2x2_in_place(lib, c):
    """out may alias in: the memory plan puts a raster-ordered pool's output over its input."""
    rng = np.random.default_rng(c)
    x = rng.integers(-128, 128, (6, 10, c), dtype=np.int8)
    ref = reference(x, (3, 5), (-128, 127))
    buf = x.copy()
    assert call(lib, buf, buf, (3, 5), (-128, 127)) == 0
    np.testing.assert_array_equal(buf.reshape(-1)[:ref.size].reshape(ref.shape), ref)


def test_max_pool_2x2_refuses_bad_arguments(lib):
    x = np.zeros((4, 4, 4), np.int8)
    out = np.zeros(16, np.int8)
    assert call(lib, x, out, (2, 2), (-128, 127)) == 0
    assert call(lib, x, out, (3, 2), (-128, 127)) == -1       # windows past the input rows
    assert call(lib, x, out, (2, 3), (-128, 127)) == -1       # past its columns
    assert call(lib, x, out, (2, 2), (5, 4)) == -1            # empty clamp
    assert call(lib, x, out, (2, 2), (-129, 127)) == -1       # clamp outside int8
    h, w, c = x.shape
    assert lib.esc2c_max_pool_2x2_s8(None, I32(h), I32(w), I32(c), _ptr(out), I32(2), I32(2), I32(-128),
                                     I32(127)) == -1


def _pool_model():
    """A fast-kernel conv of 7 channels (a 3-channel tail) and one of 16 (whole quads), each followed by a
    2x2 max pool."""
    import torch
    from torch import nn

    torch.manual_seed(5)
    model = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(6, 7, 3, padding=1), nn.MaxPool2d(2), nn.ReLU(),
                          nn.Conv2d(7, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4))
    return model, (1, 1, 14, 22)


@pytest.mark.skipif(any(shutil.which(t) is None for t in ("cmake", "arm-none-eabi-gcc", "qemu-system-arm")),
                    reason="needs cmake, gcc-arm-none-eabi and qemu-system-arm")
@pytest.mark.parametrize("fuse", ["all", "none"])
def test_max_pool_2x2_on_cortex_m7_every_layer(tmp_path, fuse):
    """Band-wise after the fast conv (fuse all) and as layers of their own (fuse none): QEMU's Cortex-M7 gives
    the host build's bits on every layer, and the host build the contract's integer vectors."""
    from _compiler_models import export_float, quantize
    from esc2c.compiler.emit import emit
    from esc2c.compiler.ops import max_pool
    from esc2c.device.runner import run_qemu

    model, shape = _pool_model()
    f = export_float(model, shape, tmp_path / "float.onnx")
    q = quantize(f, tmp_path / "int8.onnx", shape)
    res = emit(q, tmp_path / "out", board="stm32f746zg", n_vectors=4, contract="tflite", rounding="double",
               fuse=fuse)
    kernels = [op.attrs["pool"]["fn"] if op.kind == "conv_pool" else op.kernel for op in res.graph.ops]
    assert kernels.count(max_pool.MAX_POOL_2X2) == 2 and max_pool.MAX_POOL not in kernels
    assert (res.out / "model.c").read_text().count("esc2c_max_pool_2x2_s8(") == 2
    report = run_qemu(res.out, vectors=8, debug_layers=True, echo=lambda s: None)
    assert (report.identical, report.vectors, report.layers_checked) == (8, 8, True)


def test_only_tiling_pools_take_the_2x2_kernel(tmp_path):
    """ceil_mode's partial last window, padding and other windows stay on arm_max_pool_s8, as does every pool
    under kernels=cmsis; the host build equals the contract on every tensor (verify)."""
    import torch
    from torch import nn
    from _compiler_models import export_float, quantize
    from esc2c.compiler.emit import emit
    from esc2c.compiler.ops import max_pool
    from esc2c.compiler.verify import verify

    torch.manual_seed(6)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True),
                          nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, padding=1),
                          nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2),
                          nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(8, 3))
    shape = (1, 1, 21, 15)
    q = quantize(export_float(model, shape, tmp_path / "f.onnx"), tmp_path / "q.onnx", shape)
    for kernels, expect in (("fast", [max_pool.MAX_POOL] * 3 + [max_pool.MAX_POOL_2X2]),
                            ("cmsis", [max_pool.MAX_POOL] * 4)):
        res = emit(q, tmp_path / kernels, n_vectors=2, contract="tflite", kernels=kernels, fuse="none")
        assert [op.kernel for op in res.graph.ops if op.kind == "max_pool"] == expect
    rep = verify(tmp_path / "fast", n=3)
    assert rep.ok and "0 differing elements" in rep.checks[0].detail, rep.text()
