"""Front end and QDQ folding: what is accepted, and the one-line errors for bad input."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from _compiler_models import build, export_float, VGGish
from esc2c.compiler.importer import SUPPORTED_OPS, load_ir, load_model
from esc2c.errors import Esc2cError


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fe")
    return {"vgg": build("vgg", tmp), "vgg_pt_u8": build("vgg", tmp, per_channel=False, uint8=True),
            "float": tmp / "vgg_float.onnx", "tmp": tmp}


def test_folds_ort_model_into_int8_ir(models):
    g = load_ir(models["vgg"])
    kinds = [op.kind for op in g.ops]
    assert kinds.count("conv") == 6 and kinds.count("depthwise_conv") == 1
    assert "max_pool" in kinds and kinds.count("avg_pool") == 2 and kinds[-1] == "fully_connected"
    for op in g.ops:
        if op.weights is not None:
            assert op.weights.dtype == np.int8 and op.bias.dtype == np.int32
            assert op.weight_scales.shape == (op.weights.shape[0],)
    assert g.input.shape == (1, 1, 20, 13) and g.output.shape == (1, 5)


def test_per_tensor_uint8_model_is_shifted_to_int8(models):
    g8 = load_ir(models["vgg"])
    gu = load_ir(models["vgg_pt_u8"])
    assert all(-128 <= t.zero_point <= 127 for t in gu.tensors.values())
    fc = gu.ops[-1]
    assert np.all(fc.weight_scales == fc.weight_scales[0])  # per tensor, expanded per channel
    assert len(gu.ops) == len(g8.ops)


def _small_qdq(op_type="Relu", dims=(1, 4, 5, 5), extra_nodes=()):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(dims))
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, list(dims))
    inits = [numpy_helper.from_array(np.array(0.1, np.float32), "s"),
             numpy_helper.from_array(np.array(0, np.int8), "z")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"], name="q0"),
             helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"], name="dq0"),
             helper.make_node(op_type, ["xd"], ["r"], name="the_node"),
             helper.make_node("QuantizeLinear", ["r", "s", "z"], ["rq"], name="q1"),
             helper.make_node("DequantizeLinear", ["rq", "s", "z"], ["y"], name="dq1")]
    g = helper.make_graph(nodes, "g", [x], [y], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def test_unsupported_op_names_node_op_and_list(tmp_path):
    p = tmp_path / "m.onnx"
    onnx.save(_small_qdq("Sigmoid"), p)
    with pytest.raises(Esc2cError) as e:
        load_model(p)
    msg = str(e.value)
    assert "'the_node'" in msg and "Sigmoid" in msg and "supported:" in msg
    assert all(op in msg for op in SUPPORTED_OPS)


def test_float_model_says_how_to_quantize(models):
    with pytest.raises(Esc2cError) as e:
        load_model(models["float"])
    assert "float model" in str(e.value) and "esc2c compress" in str(e.value) and "quantize_static" in str(e.value)


def test_dynamic_shape_names_the_input(tmp_path):
    p = tmp_path / "dyn.onnx"
    export_float(VGGish(), (1, 1, 20, 13), p)
    m = onnx.load(p)
    m.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    onnx.save(m, p)
    with pytest.raises(Esc2cError) as e:
        load_model(p)
    assert "input 'x'" in str(e.value) and "dynamic dimension 0" in str(e.value) and "'batch'" in str(e.value)


def test_corrupt_file(tmp_path):
    p = tmp_path / "bad.onnx"
    p.write_bytes(b"\x08\x07garbage that is not protobuf \xff\xff\xff")
    with pytest.raises(Esc2cError) as e:
        load_model(p)
    assert str(p) in str(e.value) and "not a readable ONNX file" in str(e.value)


def test_missing_file(tmp_path):
    with pytest.raises(Esc2cError, match="no such file"):
        load_model(tmp_path / "nope.onnx")


def test_old_opset_rejected(tmp_path):
    m = _small_qdq()
    m.opset_import[0].version = 11
    p = tmp_path / "old.onnx"
    onnx.save(m, p)
    with pytest.raises(Esc2cError, match="opset 11 is not supported"):
        load_model(p)


def test_standalone_relu_between_qdq_folds(tmp_path):
    p = tmp_path / "relu.onnx"
    onnx.save(_small_qdq("Relu"), p)
    g = load_ir(p)
    assert [op.kind for op in g.ops] == ["relu"] and g.ops[0].act == (0.0, float("inf"))


def test_matmul_plus_bias_from_quantize_static(tmp_path):
    from _compiler_models import quantize

    rng = np.random.default_rng(0)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])
    inits = [numpy_helper.from_array(rng.standard_normal((16, 5)).astype(np.float32), "W"),
             numpy_helper.from_array(rng.standard_normal(5).astype(np.float32), "b")]
    nodes = [helper.make_node("MatMul", ["x", "W"], ["mm"], name="mm"),
             helper.make_node("Add", ["mm", "b"], ["y"], name="bias_add")]
    m = helper.make_model(helper.make_graph(nodes, "g", [x], [y], inits), opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, tmp_path / "f.onnx")
    q = quantize(tmp_path / "f.onnx", tmp_path / "q.onnx", (1, 16), per_channel=False)
    g = load_ir(q)
    assert [op.kind for op in g.ops] == ["fully_connected"]
    fc = g.ops[0]
    assert fc.weights.shape == (5, 16) and np.any(fc.bias != 0)
    from esc2c.compiler.emit import emit
    from esc2c.compiler.verify import verify

    rep = verify(emit(q, tmp_path / "out", n_vectors=2, contract="tflite").out, n=20)
    assert rep.ok, rep.text()
    # onnxruntime keeps the int8 tensor between QLinearMatMul and QLinearAdd: its contract refuses the fold
    with pytest.raises(Esc2cError, match="node 'bias_add'.*folded into its bias.*--contract tflite"):
        emit(q, tmp_path / "ort", n_vectors=2)
    assert not (tmp_path / "ort").exists()
