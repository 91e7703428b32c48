"""QDQ ONNX export: graph form, metadata, exact integer parameters read back, onnxruntime agreement."""
import json

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from torch import nn

from esc2c import contract
from esc2c.errors import Esc2cError
from esc2c.models.blocks import AuxHead, BasicBlock, ConvBNAct, ESCNet, Head
from esc2c.quant import export, intparams as ip, qat, reference

IN_SHAPE = (1, 16, 20)
N_CLASSES = 4


def _data(n, seed):
    """Separable toy spectrograms: class k lights up mel bands 4k..4k+3 (plus noise)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, N_CLASSES, (n,), generator=g)
    x = torch.randn(n, *IN_SHAPE, generator=g) * 0.7
    for i, k in enumerate(y.tolist()):
        x[i, 0, 4 * k:4 * k + 4] += 1.5
    return x, y


def _model():
    torch.manual_seed(0)
    stages = [nn.Sequential(ConvBNAct(1, 8), nn.MaxPool2d(2)),
              nn.Sequential(BasicBlock(8, 8, 12, stride=2), nn.AvgPool2d(2, 1, 1)),
              nn.Sequential(ConvBNAct(12, 12, groups=3))]
    return ESCNet(stages, Head(12, [10], N_CLASSES), aux_taps=(1,), aux_heads=[AuxHead(12, 8, N_CLASSES)])


@pytest.fixture(scope="module")
def trained():
    model = _model()
    x, y = _data(256, 0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for step in range(40):
        idx = torch.arange(step * 32, step * 32 + 32) % 256
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    q = qat.calibrate(qat.quantize_model(model.eval()), [x[:128], x[128:]]).eval()
    return q


def test_graph_form_and_metadata(trained, tmp_path):
    path = tmp_path / "m.onnx"
    spec_json = json.dumps({"n_mels": 16})
    export.export_onnx(trained, path, IN_SHAPE, feature_spec=spec_json, class_names=list("abcd"), rounding="single")
    m = onnx.load(path)
    onnx.checker.check_model(m, full_check=True)
    assert m.opset_import[0].version >= 13
    meta = export.metadata(m)
    assert meta == {"esc2c.rounding": "single", "esc2c.class_names": '["a", "b", "c", "d"]',
                    "esc2c.feature_spec": spec_json}
    dims = [d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, *IN_SHAPE]
    assert [d.dim_value for d in m.graph.output[0].type.tensor_type.shape.dim] == [1, N_CLASSES]
    ops = {n.op_type for n in m.graph.node}
    assert ops == {"QuantizeLinear", "DequantizeLinear", "Conv", "Relu", "MaxPool", "AveragePool",
                   "GlobalAveragePool", "Add", "Flatten", "Gemm"}
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    nodes = {n.name: n for n in m.graph.node}
    conv_w = nodes["s0.0.weight/dequantize"]
    assert inits[conv_w.input[0]].dtype == np.int8 and inits[conv_w.input[1]].shape == (8,)
    assert onnx.helper.get_attribute_value(conv_w.attribute[0]) == 0  # axis 0
    assert not inits[conv_w.input[2]].any()
    assert inits["s0.0.bias"].dtype == np.int32 and inits["logits.weight_scale"].shape == ()
    # the logits are an int8 tensor quantized right before the float output
    last = m.graph.node[-1]
    assert last.op_type == "DequantizeLinear" and last.output[0] == "logits" and last.input[0] == "logits_q"
    avg = nodes["s1.1"]
    assert onnx.helper.get_attribute_value(next(a for a in avg.attribute if a.name == "count_include_pad")) == 0


@pytest.mark.parametrize("rounding", contract.ROUNDING_MODES)
def test_onnx_carries_the_exact_integer_program(trained, rounding):
    m = export.build_onnx(trained.integer_program(IN_SHAPE), rounding=rounding)
    m = onnx.load_from_string(m.SerializeToString())  # what a reader of the file sees
    back = export.program_from_onnx(m)
    x, _ = _data(8, 5)
    xi = qat.quantize_input(trained, x)
    want = trained.integer_forward(xi, rounding)
    got = reference.run(back, xi, rounding)
    assert set(got) == set(want)
    for name in want:
        assert np.array_equal(got[name], want[name]), name
    # multipliers recomputed from the file's float32 scales equal the simulation's
    prog = trained.integer_program(IN_SHAPE)
    for a, b in zip(prog["layers"], back["layers"]):
        assert a["op"] == b["op"] and a["output"] == b["output"]
        if a["op"] == "conv":
            t, tb = prog["tensors"], back["tensors"]
            ma = ip.conv_requant(t[a["inputs"][0]]["scale"], a["w_scale"], t[a["output"]]["scale"])
            mb = ip.conv_requant(tb[b["inputs"][0]]["scale"], b["w_scale"], tb[b["output"]]["scale"])
            assert np.array_equal(ma[0], mb[0]) and np.array_equal(ma[1], mb[1])
            assert np.array_equal(a["weight"], b["weight"]) and np.array_equal(a["bias"], b["bias"])


def test_onnxruntime_agrees_with_fake_quant_model(trained):
    x, y = _data(300, 7)
    m = export.build_onnx(trained.integer_program(IN_SHAPE), batch=1)
    sess = export.ort_session(m)
    ort_logits = np.concatenate([sess.run(None, {"input": x[i:i + 1].numpy()})[0] for i in range(len(x))])
    with torch.no_grad():
        torch_logits = trained(x).numpy()
    s, _ = trained.fc.out_q.qparams()
    agree = np.mean(ort_logits.argmax(1) == torch_logits.argmax(1))
    lsb = np.abs(ort_logits - torch_logits) / s
    print(f"onnxruntime vs fake-quant: {agree:.4f} predictions agree, max logit diff {lsb.max():.2f} LSB, "
          f"{np.mean(lsb <= 1.01):.4f} within 1 LSB, "
          f"accuracy {np.mean(torch_logits.argmax(1) == y.numpy()):.3f}")
    assert agree >= 0.99
    assert np.mean(lsb <= 1.01) >= 0.97  # per-layer rounding differences (ORT rounds half to even in float)
    assert lsb.max() <= 3.01
    assert np.mean(torch_logits.argmax(1) == y.numpy()) > 0.6  # the model learned something


def test_uncalibrated_model_is_refused_and_nothing_written(tmp_path):
    q = qat.quantize_model(_model())
    path = tmp_path / "out" / "m.onnx"
    with pytest.raises(Esc2cError, match="calibrate"):
        export.export_onnx(q, path, IN_SHAPE)
    assert not path.exists()


@pytest.mark.parametrize("rounding", contract.ROUNDING_MODES)
def test_compiler_integer_graph_equals_the_qat_integer_program(trained, tmp_path, rounding):
    """The compiler re-derives every integer parameter from the exported file; its integer-only ONNX must
    compute the very tensors the QAT integer program does (every tensor, NHWC there, NCHW here)."""
    from esc2c.compiler.driver import compile_model
    from esc2c.compiler.lower_onnx import lower_to_onnx, run_int_onnx

    path = tmp_path / "m.onnx"
    export.export_onnx(trained, path, IN_SHAPE, rounding=rounding)
    xi = qat.quantize_input(trained, _data(6, 11)[0] * 1.3)
    want = trained.integer_forward(xi, rounding)
    low = lower_to_onnx(compile_model(path), rounding)
    got = run_int_onnx(low, xi.transpose(0, 2, 3, 1))
    compared = 0
    for name, ours in want.items():
        theirs = got.get(f"{name}_q")
        if theirs is None:
            continue
        if ours.ndim == 4:
            theirs = theirs.transpose(0, 3, 1, 2)
        assert np.array_equal(theirs.reshape(ours.shape), ours), f"{name}: {np.sum(theirs.reshape(ours.shape) != ours)}"
        compared += 1
    assert compared >= len(want) - 2 and "logits" in want and "logits_q" in got
