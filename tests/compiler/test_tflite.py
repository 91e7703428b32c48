"""The .tflite writer and the TFLite Micro reference path (DESIGN.md section 3, path 2)."""
from __future__ import annotations

import sys

import numpy as np
import pytest

import torch

from _compiler_models import build, export_float, quantize
from esc2c.compiler.driver import compile_model
from esc2c.compiler.ir import Graph, Op, Tensor
from esc2c.compiler.lower_onnx import lower_to_onnx, run_int_onnx
from esc2c.compiler.tflite_writer import activation_ranges, tflite_padding, write_tflite
from esc2c.compiler import tflm
from esc2c.errors import Esc2cError
from esc2c.quant import intparams

N_INPUTS = 24


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tflite_models")
    return {k: build(k, tmp) for k in ("vgg", "vgg_asym", "resnet")} | {"resnet_pt": build("resnet", tmp, per_channel=False)}


def _inputs(g: Graph, n: int = N_INPUTS, seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(-128, 128, (n,) + tuple(g.input.shape[1:]), dtype=np.int64).astype(np.int8)


@pytest.mark.parametrize("kind", ["vgg", "vgg_asym", "resnet", "resnet_pt"])
def test_tflm_every_tensor_identical_to_integer_reference(models, kind):
    g = compile_model(models[kind])
    m = write_tflite(g)
    assert m.data[4:8] == b"TFL3"
    x = _inputs(g)
    ref = run_int_onnx(lower_to_onnx(g, "double"), x)
    got = tflm.run_tflm_tensors(m.data, m.tensor_index, x)
    compared = 0
    for op in g.layer_ops():
        a, b = got[op.output], ref[op.output].reshape(len(x), -1)
        assert a.shape == b.shape, op.name
        n_bad = int((a != b).sum())
        assert n_bad == 0, f"layer {op.name} ({op.kind}): {n_bad} of {a.size} elements differ"
        compared += a.size
    assert compared > 10000
    logits = tflm.run_tflm(m.data, x)
    np.testing.assert_array_equal(logits, ref[g.outputs[0]].reshape(len(x), -1))
    # the comparison can tell the rounding modes apart: single rounding differs on these inputs
    single = run_int_onnx(lower_to_onnx(g, "single"), x)
    assert any((single[op.output].reshape(len(x), -1) != got[op.output]).any() for op in g.layer_ops())


class _Grouped(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Conv2d(1, 12, 3, padding=1)
        self.b = torch.nn.Conv2d(12, 12, 3, padding=1, groups=3)
        self.c = torch.nn.Conv2d(12, 6, 1, groups=2)

    def forward(self, x):
        return self.c(torch.relu(self.b(torch.relu(self.a(x)))))


def test_grouped_convolution_identical(tmp_path):
    torch.manual_seed(0)
    f = export_float(_Grouped(), (1, 1, 9, 7), tmp_path / "g_float.onnx")
    g = compile_model(quantize(f, tmp_path / "g_int8.onnx", (1, 1, 9, 7)))
    assert [op.attrs.get("group", 1) for op in g.ops if op.kind == "conv"] == [1, 3, 2]
    m = write_tflite(g)
    x = _inputs(g)
    ref = run_int_onnx(lower_to_onnx(g, "double"), x)
    assert tflm.first_difference(g, tflm.run_tflm_tensors(m.data, m.tensor_index, x), ref) is None


def test_model_features_exercised(models):
    """The fixtures cover PAD insertion (stride-2 on even sizes, asymmetric pads), the rescaling global
    average pool as a depthwise convolution, depthwise, max pool, residual ADD, reshape and FC."""
    vgg = write_tflite(compile_model(models["vgg_asym"]))
    assert "/f/f.0/Conv" in vgg.inserted_pads  # top/left 1, bottom/right 0
    assert vgg.pools_as_depthwise == ["/f/f.16/GlobalAveragePool"]
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D", "AVERAGE_POOL_2D", "RESHAPE", "PAD"} <= set(vgg.ops_used)
    # a fully connected layer is written as a 1x1 convolution between reshapes (TensorFlow's reference
    # FULLY_CONNECTED rounds differently from TFLite Micro's), per-channel and per-tensor alike
    assert "FULLY_CONNECTED" not in vgg.ops_used
    assert "FULLY_CONNECTED" not in write_tflite(compile_model(models["resnet_pt"])).ops_used
    res = write_tflite(compile_model(models["resnet"]))
    assert "ADD" in res.ops_used
    assert res.inserted_pads == ["/b3/c1/Conv"]  # 3x3 stride 2 on width 6: TFLite SAME would pad 0/1


def test_unexpressible_pads_without_pad_ops_name_the_layer(models):
    g = compile_model(models["resnet"])
    with pytest.raises(Esc2cError, match=r"layer '/b3/c1/Conv': pads .* not expressible in TFLite"):
        write_tflite(g, pad_ops=False)


def _avg_pool_graph(pads) -> Graph:
    x = Tensor("x", (1, 6, 6, 3), 0.05, -3, is_input=True)
    y_hw = ((6 + pads[0] + pads[2] - 2) // 2 + 1, (6 + pads[1] + pads[3] - 2) // 2 + 1)
    y = Tensor("y", (1,) + y_hw + (3,), 0.05, -3, is_output=True)
    op = Op("pool", "avg_pool", ["x"], ["y"], attrs={"kernel": (2, 2), "stride": (2, 2), "pads": tuple(pads)})
    return Graph({"x": x, "y": y}, [op], ["x"], ["y"], layout="NHWC")


def test_avg_pool_pads_not_expressible():
    with pytest.raises(Esc2cError, match=r"layer 'pool': pads \(top, left, bottom, right\) = \(1, 1, 1, 1\).*"
                                         r"not expressible in TFLite"):
        write_tflite(_avg_pool_graph((1, 1, 1, 1)))


def test_avg_pool_valid_matches_integer_reference():
    g = _avg_pool_graph((0, 0, 0, 0))
    m = write_tflite(g)
    x = _inputs(g, 50)
    ref = run_int_onnx(lower_to_onnx(g, "double"), x)["y"].reshape(50, -1)
    np.testing.assert_array_equal(tflm.run_tflm(m.data, x), ref)


def test_multiplier_tflite_would_not_derive_is_refused(models):
    g = compile_model(models["vgg"])
    op = next(o for o in g.ops if o.kind == "conv")
    op.multiplier = op.multiplier.copy()
    op.multiplier[2] += 1
    with pytest.raises(Esc2cError, match=rf"layer '{op.name}': TFLite would derive multiplier/shift .* channel 2"):
        write_tflite(g)


def test_clamp_that_is_no_fused_activation_is_refused(models):
    g = compile_model(models["vgg"])
    op = next(o for o in g.ops if o.kind == "conv")
    op.act_min, op.act_max = -100, 90
    with pytest.raises(Esc2cError, match=rf"layer '{op.name}': clamp \[-100, 90\] is not a TFLite fused activation"):
        write_tflite(g)


def test_activation_ranges_follow_tflite():
    r = activation_ranges(6.0 / 255.0, -128)
    assert r["NONE"] == (-128, 127) and r["RELU"] == (-128, 127) and r["RELU6"] == (-128, 127)
    r = activation_ranges(0.05, 10)
    assert r["RELU"] == (10, 127) and r["RELU6"] == (10, 127) and r["RELU_N1_TO_1"] == (-10, 30)


def test_tflite_padding_rule():
    assert tflite_padding((20, 13), (10, 7), (3, 3), (2, 2), (0, 1, 1, 1)) == "SAME"
    assert tflite_padding((20, 13), (10, 7), (3, 3), (2, 2), (1, 1, 1, 1)) is None  # SAME pads 0 on top
    assert tflite_padding((6, 6), (3, 3), (1, 1), (2, 2), (0, 0, 0, 0)) == "VALID"
    assert tflite_padding((7, 7), (3, 3), (3, 3), (2, 2), (0, 0, 0, 0)) == "VALID"


def test_smallest_arena_is_the_boundary(models):
    g = compile_model(models["resnet"])
    m = write_tflite(g)
    s = tflm.smallest_arena(m.data)
    assert s.size > 0 and s.probes < 40
    assert tflm.arena_works(m.data, s.size)
    assert not tflm.arena_works(m.data, s.size - 1)
    assert not tflm.arena_works(m.data, s.size // 2)
    x = _inputs(g, 4)
    ref = run_int_onnx(lower_to_onnx(g, "double"), x)[g.outputs[0]].reshape(4, -1)
    np.testing.assert_array_equal(tflm.run_tflm(m.data, x, arena_size=s.size), ref)


def test_tensorflow_comparison_not_run_without_tensorflow(models, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # import tensorflow -> ImportError
    g = compile_model(models["resnet"])
    from esc2c.compiler.verify import VerifyContext

    ctx = VerifyContext(models["resnet"].parent, g, "double", _inputs(g, 2), np.zeros((2, 4), np.int8), {})
    r = tflm.check_tf_reference(ctx)
    assert not r.ran and not r.ok and r.detail.startswith("tensorflow is not importable")
    assert "skipping the TensorFlow Lite comparison" in capsys.readouterr().err


@pytest.mark.skipif(tflm.tensorflow_unavailable() is not None, reason="tensorflow (optional extra) not installed")
@pytest.mark.parametrize("kind", ["vgg", "vgg_asym", "resnet", "resnet_pt"])
def test_tensorflow_reference_kernels_agree(models, kind):
    g = compile_model(models[kind])
    m = write_tflite(g)
    x = _inputs(g, 8)
    np.testing.assert_array_equal(tflm.run_tf_reference(m.data, x), tflm.run_tflm(m.data, x))


def test_rounding_ties_match_tflm():
    """Requantization ties, positive and negative, on purpose: a 1x1 convolution of every int8 value with
    real multipliers 1/2, 1/4, 3/8 and 1/16 (products landing exactly on .5). TFLM's gemmlowp-style
    doubling high multiply and rounding shift must give the contract's double-rounding bits."""
    s_in, s_out = 0.5, 1.0
    w_scales = np.array([1.0, 0.5, 0.75, 0.125])  # M = s_in * s_w / s_out
    x = Tensor("x", (1, 16, 16, 1), s_in, 3, is_input=True)
    y = Tensor("y", (1, 16, 16, 4), s_out, -2, is_output=True)
    op = Op("tie", "conv", ["x"], ["y"], attrs={"kernel": (1, 1), "stride": (1, 1), "pads": (0, 0, 0, 0),
                                                "dilation": (1, 1)},
            weights=np.array([1, 1, 1, 1], np.int8).reshape(4, 1, 1, 1), weight_scales=w_scales,
            bias=np.array([0, 5, -7, 1], np.int32))
    op.multiplier, op.shift = (a.astype(np.int32) for a in intparams.conv_requant(s_in, w_scales, s_out))
    g = Graph({"x": x, "y": y}, [op], ["x"], ["y"], layout="NHWC")
    m = write_tflite(g)
    q = np.arange(-128, 128, dtype=np.int64)
    acc = (q[:, None] - x.zero_point) + op.bias[None, :]
    want = np.clip(intparams.requantize(acc, op.multiplier, op.shift, "double") + y.zero_point, -128, 127)
    got = tflm.run_tflm(m.data, q.astype(np.int8).reshape(1, 16, 16, 1)).reshape(256, 4)
    np.testing.assert_array_equal(got, want)
    single = np.clip(intparams.requantize(acc, op.multiplier, op.shift, "single") + y.zero_point, -128, 127)
    ties_below_zero = (acc * (s_in * w_scales / s_out) * 2 % 2 == 1) & (acc < 0)
    assert ties_below_zero.sum() > 100 and (single != want).any()


def test_max_pool_with_unexpressible_pads_and_requantize():
    """Max pool pads TFLite's SAME would place differently (3x3 stride 2 on 6 wide: SAME pads 0/1, the
    IR 1/1) go through PADV2 with -128; then an int8 -> int8 requantize as QUANTIZE."""
    x = Tensor("x", (1, 6, 6, 2), 0.05, 4, is_input=True)
    p = Tensor("p", (1, 3, 3, 2), 0.05, 4)
    y = Tensor("y", (1, 3, 3, 2), 0.0371, -9, is_output=True)
    pool = Op("pool", "max_pool", ["x"], ["p"], attrs={"kernel": (3, 3), "stride": (2, 2), "pads": (1, 1, 1, 1)})
    rq = Op("rq", "requantize", ["p"], ["y"])
    m, s = intparams.rescale_params(float(np.float32(0.05)), float(np.float32(0.0371)))
    rq.multiplier, rq.shift = np.array([m], np.int32), np.array([s], np.int32)
    x.scale, y.scale, p.scale = (float(np.float32(v)) for v in (0.05, 0.0371, 0.05))
    g = Graph({"x": x, "p": p, "y": y}, [pool, rq], ["x"], ["y"], layout="NHWC")
    t = write_tflite(g)
    assert t.inserted_pads == ["pool"] and {"PADV2", "MAX_POOL_2D", "QUANTIZE"} <= set(t.ops_used)
    xs = _inputs(g, 40)
    ref = run_int_onnx(lower_to_onnx(g, "double"), xs)
    assert tflm.first_difference(g, tflm.run_tflm_tensors(t.data, t.tensor_index, xs), ref) is None
    np.testing.assert_array_equal(tflm.run_tflm(t.data, xs), ref["y"].reshape(40, -1))
