"""AveragePool with count_include_pad=1 and padding (torch's AvgPool2d(padding>0) default), from a model the
user quantized with onnxruntime: imported as a pad op (the zero point around the input) and a pool without
padding, emitted, and verified bit-exact on every tensor against the integer ONNX (and TFLite Micro)."""
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from _compiler_models import export_float, quantize
from esc2c.compiler.driver import compile_model
from esc2c.compiler.emit import emit
from esc2c.compiler.importer import load_ir
from esc2c.compiler.lower_onnx import lower_to_onnx, run_int_onnx
from esc2c.compiler.verify import verify
from esc2c.device.runner import run_qemu
from esc2c.contract import ORT_ROUNDING, TFLITE
from esc2c.errors import Esc2cError

SHAPE = (1, 1, 12, 10)


class _IncludePad(torch.nn.Module):
    def __init__(self, ceil_mode=False):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 6, 3, padding=1)
        self.pool = torch.nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=ceil_mode)  # count_include_pad=True
        self.fc = torch.nn.Linear(self.pool(self.conv(torch.zeros(SHAPE))).numel(), 5)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(torch.relu(self.conv(x))), 1))


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("incpad")
    torch.manual_seed(0)
    f = export_float(_IncludePad(), SHAPE, tmp / "f.onnx")
    pool = next(n for n in onnx.load(str(f)).graph.node if n.op_type == "AveragePool")
    assert {a.name: onnx.helper.get_attribute_value(a) for a in pool.attribute}.get("count_include_pad") == 1
    return quantize(f, tmp / "q.onnx", SHAPE)


def test_imported_as_pad_then_unpadded_pool(model):
    g = load_ir(model)
    kinds = [op.kind for op in g.ops]
    i = kinds.index("pad")
    assert kinds[i + 1] == "avg_pool" and g.ops[i + 1].attrs["pads"] == (0, 0, 0, 0)
    assert g.ops[i].attrs["pads"] == (1, 1, 1, 1) and g.ops[i + 1].inputs == g.ops[i].outputs


def test_include_pad_pool_equals_the_onnx_definition(model):
    """The integer ONNX of the pad + pool equals the definition computed here: the window sum of
    (q - zp_in) over the zero-padded input divided by k*k, requantized to the output scale."""
    g = compile_model(model, fuse="none")
    i = next(k for k, op in enumerate(g.ops) if op.kind == "pad")
    pad_op, pool = g.ops[i], g.ops[i + 1]
    x = np.random.default_rng(1).integers(-128, 128, (4,) + tuple(g.input.shape[1:])).astype(np.int8)
    t = run_int_onnx(lower_to_onnx(g, "double"), x)
    xin, xt = t[pad_op.inputs[0]].astype(np.int64), g.tensors[pad_op.inputs[0]]
    yt = g.tensors[pool.output]
    padded = np.pad(xin - xt.zero_point, ((0, 0), (1, 1), (1, 1), (0, 0)))
    k, s = pool.attrs["kernel"][0], pool.attrs["stride"][0]
    oh, ow = yt.shape[1:3]
    sums = np.stack([np.stack([padded[:, r * s:r * s + k, c * s:c * s + k].sum((1, 2)) for c in range(ow)], 1)
                     for r in range(oh)], 1)
    real = sums * xt.scale / (k * k)
    want = np.clip(np.round(real / yt.scale) + yt.zero_point, -128, 127)
    got = t[pool.output].astype(np.int64)
    assert np.abs(got - want).max() <= 1 and np.mean(got == want) > 0.95  # float rounding vs the contract's


def _rescaled_pool_output(src, dest, factor=1.37):
    """The same model with the pool's output (and the flatten after it, which keeps its input's
    quantization) quantized to another scale: the rescaling pool kernel. The Gemm's int32 bias scale
    (s_in * s_w) moves with its input's scale so the model stays consistent."""
    m = onnx.load(str(src))
    g = m.graph
    pool = next(n for n in g.node if n.op_type == "AveragePool")
    q = next(n for n in g.node if n.op_type == "QuantizeLinear" and n.input[0] == pool.output[0])
    old = next(i for i in g.initializer if i.name == q.input[1])
    g.initializer.append(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(old) * np.float32(factor),
                                                      "pool_out_scale"))
    after = False
    for n in g.node:  # topological order: every Q/DQ from the pool's Q up to the Gemm
        after = after or n is q
        if n.op_type == "Gemm":
            break
        if after and n.op_type in ("QuantizeLinear", "DequantizeLinear") and n.input[1] == old.name:
            n.input[1] = "pool_out_scale"
    bias = next(i for i in g.initializer if i.name == "fc.bias_quantized_scale")
    bias.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(bias) * np.float32(factor), bias.name))
    onnx.save(m, str(dest))
    return dest


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not installed")
@pytest.mark.parametrize("rescale", [False, True])
def test_emitted_and_verified_bit_exact(model, tmp_path, rescale):
    """Under the tflite contract: C == integer ONNX and == TFLite Micro (PAD, then the pool) on every tensor;
    the pool's output is onnxruntime's on the QDQ file to 1 LSB (its float arithmetic against the contract's
    integer one, so the logits of the rescaling variant drift further)."""
    src = _rescaled_pool_output(model, tmp_path / "r.onnx") if rescale else model
    r = emit(src, tmp_path / "out", n_vectors=2, fuse="none", contract=TFLITE)
    pool = next(op for op in r.graph.ops if op.kind == "avg_pool")
    assert pool.kernel == ("esc2c_avgpool_rescale_s8" if rescale else "arm_avgpool_s8")
    assert "(pad) -> esc2c_pad_inline" in (r.out / "model.c").read_text()
    # the equal-scale pool keeps the logits within verify's default 1 LSB; the rescaling one is compared on
    # the pool's own output below instead (onnxruntime requantizes in float32)
    rep = verify(r.out, n=6, n_features=0, qdq_tolerance=127 if rescale else 1)
    assert rep.ok, rep.text()
    assert "0 differing elements" in rep.checks[0].detail
    tflm = next(c for c in rep.checks if c.name.startswith("TFLite Micro"))
    assert tflm.ran and tflm.ok, rep.text()
    x = np.random.default_rng(2).integers(-128, 128, (6,) + tuple(r.graph.input.shape[1:])).astype(np.int8)
    ours = run_int_onnx(lower_to_onnx(r.graph, "double"), x)[pool.output].astype(np.int64)
    theirs = _ort_pool_output(src, r.graph, x).transpose(0, 2, 3, 1)
    assert np.abs(ours - theirs).max() <= 1 and np.mean(ours == theirs) > 0.9


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not installed")
@pytest.mark.parametrize("rescale", [False, True])
def test_onnxruntime_contract_equals_onnxruntime(model, tmp_path, rescale):
    """Under the onnxruntime contract (the default for this file) the pad + pool is QLinearAveragePool's float
    arithmetic: the pool's output and every other tensor equal onnxruntime's exactly."""
    src = _rescaled_pool_output(model, tmp_path / "r.onnx") if rescale else model
    r = emit(src, tmp_path / "out", n_vectors=2, fuse="none")
    pool = next(op for op in r.graph.ops if op.kind == "avg_pool")
    assert pool.kernel == "esc2c_avgpool_ort_s8"
    rep = verify(r.out, n=6, n_features=0)
    assert rep.ok and not rep.not_run, rep.text()
    assert "0 differing elements" in rep.checks[-1].detail and "onnxruntime" in rep.checks[-1].name
    x = np.random.default_rng(2).integers(-128, 128, (6,) + tuple(r.graph.input.shape[1:])).astype(np.int8)
    ours = run_int_onnx(lower_to_onnx(r.graph, ORT_ROUNDING), x)[pool.output].astype(np.int64)
    assert np.array_equal(ours, _ort_pool_output(src, r.graph, x).transpose(0, 2, 3, 1))


def _ort_pool_output(path, g, x_int8):
    """onnxruntime (qdqisint8allowed) on the QDQ file: the pool's quantized output, NCHW int8."""
    m = onnx.load(str(path))
    pool = next(n for n in m.graph.node if n.op_type == "AveragePool")
    q = next(n for n in m.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == pool.output[0])
    m.graph.output.append(onnx.helper.make_empty_tensor_value_info(q.output[0]))
    so = ort.SessionOptions()
    so.add_session_config_entry("session.qdqisint8allowed", "1")
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    t = g.input
    xf = ((x_int8.astype(np.float32) - t.zero_point) * np.float32(t.scale)).transpose(0, 3, 1, 2)
    out = [sess.run([q.output[0]], {sess.get_inputs()[0].name: xf[i:i + 1]})[0][0] for i in range(len(xf))]
    return np.stack(out).astype(np.int64)


def test_include_pad_with_ceil_mode_is_named(tmp_path):
    torch.manual_seed(0)
    f = export_float(_IncludePad(ceil_mode=True), SHAPE, tmp_path / "f.onnx")
    q = quantize(f, tmp_path / "q.onnx", SHAPE)
    with pytest.raises(Esc2cError, match="AveragePool.*count_include_pad=1 with padding and ceil_mode=1"):
        load_ir(q)


@pytest.mark.skipif(any(shutil.which(t) is None for t in ("cmake", "arm-none-eabi-gcc", "qemu-system-arm")),
                    reason="needs cmake, gcc-arm-none-eabi and qemu-system-arm")
def test_pad_and_pool_on_qemu_equal_the_host_on_every_layer(model, tmp_path):
    out = emit(_rescaled_pool_output(model, tmp_path / "r.onnx"), tmp_path / "out", board="stm32f746zg",
               n_vectors=2, fuse="none").out
    report = run_qemu(out, vectors=8, debug_layers=True, echo=lambda s: None)
    assert (report.identical, report.vectors, report.layers_checked) == (8, 8, True)
