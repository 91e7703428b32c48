"""The quantized Abs op kind (esc2c/compiler/ops/abs.py + templates/ops/abs.c.j2), added through the op
registry alone: DQ -> Abs -> Q after a convolution, emitted to C, lowered to integer ONNX and .tflite, and
bit-exact on every tensor: out = clamp(requant(|q - zp_in|, s_in / s_out) + zp_out)."""
import shutil

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from esc2c.compiler.driver import compile_model
from esc2c.compiler.emit import emit
from esc2c.compiler.lower_onnx import lower_to_onnx, run_int_onnx
from esc2c.compiler.tflite_writer import write_tflite
from esc2c.compiler.verify import verify
from esc2c.errors import Esc2cError
from esc2c.quant import intparams

S_IN, ZP_IN = 0.08, -5  # the conv output, Abs input
S_OUT, ZP_OUT = 0.06, -100


def _qdq(inits, src, s, z, tag):
    inits += [numpy_helper.from_array(np.float32(s), f"s_{tag}"), numpy_helper.from_array(np.int8(z), f"z_{tag}")]
    return [helper.make_node("QuantizeLinear", [src, f"s_{tag}", f"z_{tag}"], [f"{tag}_q"], name=f"q_{tag}"),
            helper.make_node("DequantizeLinear", [f"{tag}_q", f"s_{tag}", f"z_{tag}"], [f"{tag}_d"], name=f"dq_{tag}")]


def conv_abs_model(path, relu: bool = False):
    """x -> Q -> DQ -> Conv 3x3 (per-channel int8 weights) -> Q -> DQ -> Abs [-> Relu] -> Q -> DQ -> Flatten -> Gemm
    (per-tensor int8 weights) -> Q -> DQ."""
    rng = np.random.default_rng(2)
    inits = [numpy_helper.from_array(rng.integers(-127, 128, (4, 2, 3, 3)).astype(np.int8), "w"),
             numpy_helper.from_array(np.linspace(0.005, 0.02, 4).astype(np.float32), "ws"),
             numpy_helper.from_array(np.zeros(4, np.int8), "wz")]
    nodes = _qdq(inits, "x", 0.05, 3, "in")
    nodes += [helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wd"], axis=0, name="dq_w"),
              helper.make_node("Conv", ["in_d", "wd"], ["conv"], pads=[1, 1, 1, 1], name="conv")]
    nodes += _qdq(inits, "conv", S_IN, ZP_IN, "c")
    nodes.append(helper.make_node("Abs", ["c_d"], ["a"], name="abs"))
    if relu:
        nodes.append(helper.make_node("Relu", ["a"], ["r"], name="relu"))
    nodes += _qdq(inits, "r" if relu else "a", S_OUT, ZP_OUT, "o")
    inits += [numpy_helper.from_array(rng.integers(-127, 128, (3, 120)).astype(np.int8), "fw"),
              numpy_helper.from_array(np.float32(0.004), "fws"), numpy_helper.from_array(np.int8(0), "fwz")]
    nodes += [helper.make_node("Flatten", ["o_d"], ["flat"], name="flatten"),
              helper.make_node("DequantizeLinear", ["fw", "fws", "fwz"], ["fwd"], name="dq_fw"),
              helper.make_node("Gemm", ["flat", "fwd"], ["logits"], transB=1, name="fc")]
    nodes += _qdq(inits, "logits", 0.1, 0, "l")  # verify compares flat logits with the QDQ model in onnxruntime
    g = helper.make_graph(nodes, "conv_abs", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 5, 6])],
                          [helper.make_tensor_value_info("l_d", TensorProto.FLOAT, [1, 3])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    onnx.save(m, str(path))
    return path


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("abs")
    return emit(conv_abs_model(tmp / "conv_abs.onnx"), tmp / "out", n_vectors=4)


def _abs_op(g):
    (op,) = [op for op in g.ops if op.kind == "abs"]
    return op


def test_abs_layer_is_emitted(project):
    g = project.graph
    assert [op.kind for op in g.layer_ops()] == ["conv", "abs", "fully_connected"]
    op = _abs_op(g)
    assert (int(op.multiplier[0]), int(op.shift[0])) == intparams.rescale_params(S_IN, S_OUT)
    assert op.attrs.get("in_place") == op.inputs[0]  # elementwise: over the conv output, which dies here
    text = (project.out / "model.c").read_text()
    assert "/* layer 1: abs (abs) -> " in text and "esc2c_requantize(d < 0 ? -d : d" in text


@pytest.mark.parametrize("rounding", ["double", "single"])
def test_integer_onnx_abs_equals_the_formula(project, rounding):
    g = project.graph
    op = _abs_op(g)
    x = np.random.default_rng(0).integers(-128, 128, (16,) + tuple(g.input.shape[1:])).astype(np.int8)
    res = run_int_onnx(lower_to_onnx(g, rounding), x)
    q = res[op.inputs[0]].astype(np.int64)
    assert q.min() < ZP_IN < q.max()  # both signs of q - zp_in occur
    m, s = intparams.rescale_params(S_IN, S_OUT)
    want = np.clip(intparams.requantize(np.abs(q - ZP_IN), m, s, rounding) + ZP_OUT, -128, 127)
    assert res[op.output].dtype == np.int8 and np.array_equal(res[op.output], want)


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not installed")
@pytest.mark.parametrize("rounding", ["double", "single"])
def test_host_c_is_bit_exact_on_every_tensor(project, rounding):
    rep = verify(project.out, n=6, rounding=rounding)
    assert rep.ok, rep.text()
    assert "0 differing elements" in rep.checks[0].detail
    g = project.graph
    assert rep.elements_compared == 6 * sum(g.tensors[op.output].size for op in g.layer_ops())
    # TFLite Micro's ABS int8 (the same rescale, double rounding) runs model.tflite: equal to the C in double
    # rounding, to the integer ONNX in double when the C rounds once
    tflm = [c for c in rep.checks if c.name.startswith("TFLite Micro")]
    assert len(tflm) == 1 and tflm[0].ran and tflm[0].ok, rep.text()


def test_clamped_abs_has_no_tflite_form(tmp_path):
    g = compile_model(conv_abs_model(tmp_path / "conv_abs_relu.onnx", relu=True))
    op = _abs_op(g)
    assert op.act_min == ZP_OUT  # the Relu after Abs is its clamp
    with pytest.raises(Esc2cError, match="'abs': a clamped abs has no TFLite form"):
        write_tflite(g)
