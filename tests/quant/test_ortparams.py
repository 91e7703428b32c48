"""The onnxruntime contract's formulas (esc2c.quant.ortparams) equal onnxruntime's fused integer kernels
(full optimisation, session.qdqisint8allowed=1) bit for bit: every int8 pair of QLinearAdd, random
QLinearConv / QLinearAveragePool / QLinearGlobalAveragePool layers, and a standalone rescale."""
from __future__ import annotations

import fractions

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from esc2c.quant import ortparams

F32 = np.float32


def _session(nodes, inputs, inits, optimized: str | None = None) -> ort.InferenceSession:
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, TensorProto.INT8, s) for n, s in inputs],
                          [helper.make_tensor_value_info("y", TensorProto.INT8, None)],
                          [numpy_helper.from_array(np.asarray(v, dt), n) for n, v, dt in inits])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 19)])
    m.ir_version = 9
    so = ort.SessionOptions()
    so.add_session_config_entry("session.qdqisint8allowed", "1")
    so.log_severity_level = 3
    so.intra_op_num_threads = 1
    if optimized:
        so.optimized_model_filepath = optimized
    return ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _scales(rng, n=1, lo=-7.0, hi=-0.5):
    return F32(np.exp(rng.uniform(lo, hi, n))).astype(F32)


def test_fmaf_rounds_once():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((2, 2000)).astype(F32)
    z = (-(x.astype(np.float64) * y)).astype(F32) + rng.standard_normal(2000).astype(F32) * F32(1e-6)
    got = ortparams.fmaf(x, y, z)
    for i in range(len(x)):
        exact = fractions.Fraction(float(x[i])) * fractions.Fraction(float(y[i])) + fractions.Fraction(float(z[i]))
        near = np.float32(float(exact))
        cands = [np.nextafter(near, F32(-np.inf)), near, np.nextafter(near, F32(np.inf))]
        best = min(cands, key=lambda v: (abs(fractions.Fraction(float(v)) - exact), int(np.float32(v).view(np.int32)) & 1))
        assert got[i] == best, (x[i], y[i], z[i])
    # (1 + 2^-12)^2 = 1 + 2^-11 + 2^-24 is halfway between two float32 values; a tiny z decides the side,
    # which a float64 sum loses (it would round to even, down, both times)
    x = F32(1 + 2 ** -12)
    assert ortparams.fmaf(x, x, F32(2.0 ** -80)) == F32(1 + 2 ** -11 + 2 ** -23)
    assert ortparams.fmaf(x, x, F32(-(2.0 ** -80))) == F32(1 + 2 ** -11)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_qlinear_add_every_pair(tmp_path, seed):
    rng = np.random.default_rng(seed)
    sa, sb, sc = _scales(rng, 3)
    za, zb, zc = (int(v) for v in rng.integers(-128, 128, 3))
    opt = str(tmp_path / "opt.onnx")
    s = _session([helper.make_node("DequantizeLinear", ["a", "sa", "za"], ["fa"]),
                  helper.make_node("DequantizeLinear", ["b", "sb", "zb"], ["fb"]),
                  helper.make_node("Add", ["fa", "fb"], ["fc"]),
                  helper.make_node("QuantizeLinear", ["fc", "sc", "zc"], ["y"])],
                 [("a", [256, 256]), ("b", [256, 256])],
                 [("sa", sa, F32), ("za", za, np.int8), ("sb", sb, F32), ("zb", zb, np.int8),
                  ("sc", sc, F32), ("zc", zc, np.int8)], opt)
    assert [n.op_type for n in onnx.load(opt).graph.node] == ["QLinearAdd"]
    q = np.arange(-128, 128, dtype=np.int8)
    a, b = np.meshgrid(q, q, indexing="ij")
    want = s.run(None, {"a": a, "b": b})[0]
    p = ortparams.add_params(sa, za, sb, zb, sc, zc)
    got = ortparams.add_table(p, (-128, 127))
    assert np.array_equal(got, want), f"{int((got != want).sum())} of 65536 pairs differ"


def _conv_model(rng, ci, co, k, per_channel):
    w = rng.integers(-127, 128, (co, ci, k, k)).astype(np.int8)
    sw = _scales(rng, co, -8, -3) if per_channel else np.full(co, _scales(rng, 1, -8, -3)[0], F32)
    sx, sy = _scales(rng)[0], _scales(rng, 1, -5, -1)[0]
    zx, zy = (int(v) for v in rng.integers(-128, 128, 2))
    b = rng.integers(-3000, 3000, co).astype(np.int32)
    return w, sw, sx, sy, zx, zy, b


@pytest.mark.parametrize("per_channel", [True, False])
def test_qlinear_conv(tmp_path, per_channel):
    rng = np.random.default_rng(3 + per_channel)
    for t in range(40):
        ci, co, k = int(rng.integers(1, 9)), 32, int(rng.choice([1, 3]))
        w, sw, sx, sy, zx, zy, b = _conv_model(rng, ci, co, k, per_channel)
        opt = str(tmp_path / "opt.onnx") if t == 0 else None
        s = _session([helper.make_node("DequantizeLinear", ["x", "sx", "zx"], ["fx"]),
                      helper.make_node("DequantizeLinear", ["w", "sw", "zw"], ["fw"], axis=0),
                      helper.make_node("DequantizeLinear", ["b", "sb", "zb"], ["fb"], axis=0),
                      helper.make_node("Conv", ["fx", "fw", "fb"], ["fy"], pads=[k // 2] * 4),
                      helper.make_node("QuantizeLinear", ["fy", "sy", "zy"], ["y"])],
                     [("x", [1, ci, 12, 12])],
                     [("sx", sx, F32), ("zx", zx, np.int8), ("w", w, np.int8), ("sw", sw, F32),
                      ("zw", np.zeros(co), np.int8), ("b", b, np.int32), ("sb", sx * sw, F32),
                      ("zb", np.zeros(co), np.int32), ("sy", sy, F32), ("zy", zy, np.int8)], opt)
        if opt:
            assert "QLinearConv" in [n.op_type for n in onnx.load(opt).graph.node]
        x = rng.integers(-128, 128, (1, ci, 12, 12)).astype(np.int8)
        want = s.run(None, {"x": x})[0][0].astype(np.int64)
        xp = np.pad(x[0].astype(np.int64) - zx, ((0, 0), (k // 2, k // 2), (k // 2, k // 2)))
        acc = np.zeros((co, 12, 12), np.int64) + b[:, None, None]
        for i in range(k):
            for j in range(k):
                acc += np.einsum("oc,chw->ohw", w[:, :, i, j].astype(np.int64), xp[:, i:i + 12, j:j + 12])
        scale = ortparams.conv_scale(sx, sw, sy)[:, None, None]
        got = np.clip(ortparams.requantize(acc, scale) + zy, -128, 127)
        assert np.array_equal(got, want)


def _pool_session(op, shape, sx, zx, sy, zy, **attrs):
    return _session([helper.make_node("DequantizeLinear", ["x", "sx", "zx"], ["fx"]),
                     helper.make_node(op, ["fx"], ["fy"], **attrs),
                     helper.make_node("QuantizeLinear", ["fy", "sy", "zy"], ["y"])],
                    [("x", shape)], [("sx", sx, F32), ("zx", zx, np.int8), ("sy", sy, F32), ("zy", zy, np.int8)])


def test_qlinear_global_average_pool():
    rng = np.random.default_rng(4)
    for t in range(60):
        c, h, w = (int(v) for v in rng.integers(1, 20, 3))
        sx = _scales(rng)[0]
        sy = sx if t % 3 == 0 else _scales(rng)[0]
        zx, zy = (int(v) for v in rng.integers(-128, 128, 2))
        x = rng.integers(-128, 128, (4, c, h, w)).astype(np.int8)
        want = _pool_session("GlobalAveragePool", [4, c, h, w], sx, zx, sy, zy).run(None, {"x": x})[0]
        n = h * w
        acc = x.astype(np.int64).reshape(4, c, n).sum(-1) - zx * n
        got = np.clip(ortparams.requantize(acc, ortparams.global_pool_scale(sx, sy, n)) + zy, -128, 127)
        assert np.array_equal(got, want.reshape(4, c))


def test_qlinear_average_pool():
    rng = np.random.default_rng(5)
    for t in range(80):
        c, h, w = int(rng.integers(1, 12)), int(rng.integers(3, 12)), int(rng.integers(3, 12))
        k = int(rng.choice([2, 3]))
        st = int(rng.choice([1, 2]))
        p = int(rng.choice([0, 1])) if k == 3 else 0
        ceil = int(rng.integers(0, 2))
        sx = _scales(rng)[0]
        sy = sx if t % 3 == 0 else _scales(rng)[0]
        zx, zy = (int(v) for v in rng.integers(-128, 128, 2))
        x = rng.integers(-128, 128, (2, c, h, w)).astype(np.int8)
        want = _pool_session("AveragePool", [2, c, h, w], sx, zx, sy, zy, kernel_shape=[k, k], strides=[st, st],
                             pads=[p] * 4, ceil_mode=ceil).run(None, {"x": x})[0]
        got = ortparams.avg_pool(x.transpose(0, 2, 3, 1), zx, sx, sy, zy, (k, k), (st, st), (p, p, p, p),
                                 want.shape[2:])
        assert np.array_equal(np.clip(got, -128, 127).transpose(0, 3, 1, 2), want), (k, st, p, ceil)


def test_rescale():
    rng = np.random.default_rng(6)
    q = np.arange(-128, 128, dtype=np.int8)[None]
    for _ in range(30):
        sx, sy = _scales(rng, 2)
        zx, zy = (int(v) for v in rng.integers(-128, 128, 2))
        s = _session([helper.make_node("DequantizeLinear", ["x", "sx", "zx"], ["fx"]),
                      helper.make_node("Identity", ["fx"], ["fi"]),
                      helper.make_node("QuantizeLinear", ["fi", "sy", "zy"], ["y"])],
                     [("x", [1, 256])], [("sx", sx, F32), ("zx", zx, np.int8), ("sy", sy, F32), ("zy", zy, np.int8)])
        want = s.run(None, {"x": q})[0]
        assert np.array_equal(np.clip(ortparams.rescale(q, zx, sx, sy, zy), -128, 127), want)
