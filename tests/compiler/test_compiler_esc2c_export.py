"""The compiler takes esc2c's own QDQ export: C == the project's numpy integer reference on every tensor."""
import shutil

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from esc2c.compiler.emit import emit
from esc2c.compiler.verify import build_host, feature_inputs, run_host, verify
from esc2c.features import FeatureSpec
from esc2c.models.blocks import AuxHead, BasicBlock, ConvBNAct, ESCNet, Head
from esc2c.quant import export, qat, reference

pytestmark = pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not installed")
IN_SHAPE = (1, 16, 20)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("esc2c_export")
    torch.manual_seed(0)
    stages = [nn.Sequential(ConvBNAct(1, 8), nn.MaxPool2d(2)),
              nn.Sequential(BasicBlock(8, 8, 12, stride=2), nn.AvgPool2d(2, 1, 1)),
              nn.Sequential(ConvBNAct(12, 12, groups=3))]
    model = ESCNet(stages, Head(12, [10], 4), aux_taps=(1,), aux_heads=[AuxHead(12, 8, 4)])
    x = torch.randn(64, *IN_SHAPE)
    q = qat.calibrate(qat.quantize_model(model.eval()), [x[:32], x[32:]]).eval()
    path = tmp / "model.onnx"
    spec = FeatureSpec(sample_rate=8000, clip_seconds=0.336, n_fft=256, win_length=256, hop_length=128, n_mels=16,
                       mean=-40.0, std=20.0)
    assert spec.shape == IN_SHAPE[1:]
    export.export_onnx(q, path, IN_SHAPE, feature_spec=spec, class_names=list("abcd"))
    return path, emit(path, tmp / "out", n_vectors=3)


@pytest.mark.parametrize("rounding", ["double", "single"])
def test_c_equals_integer_reference_on_every_tensor(project, rounding):
    path, r = project
    g = r.graph
    assert any(op.kernel == "esc2c_group_conv_s8" for op in g.ops)  # groups=3 conv
    rng = np.random.default_rng(5)
    x = rng.integers(-128, 128, (4,) + g.input.shape[1:], dtype=np.int64).astype(np.int8)
    exe = build_host(r.out, rounding)
    c = run_host(exe, g, x, exe.parent)
    ref = reference.run(export.program_from_onnx(onnx.load(path)), x.transpose(0, 3, 1, 2), rounding)
    compared = 0
    for op in g.layer_ops():
        name = op.output
        if not name.endswith("_q") or name[:-2] not in ref:
            continue
        want = ref[name[:-2]]
        want = want.transpose(0, 2, 3, 1) if want.ndim == 4 else want
        assert np.array_equal(c[name].reshape(want.shape), want), f"layer {op.name} differs"
        compared += 1
    assert compared >= 8
    rep = verify(r.out, n=4, rounding=rounding, n_features=3)
    assert rep.ok, rep.text()
    assert rep.n == 7 and rep.n_features == 3 and "3 log-mel features" in rep.text()


def test_feature_inputs_are_quantized_log_mel(project):
    _, r = project
    x = feature_inputs(r.graph, 5)
    assert x.shape == (5, 16, 20, 1) and x.dtype == np.int8
    assert len(np.unique(x)) > 20 and not np.array_equal(x[0], x[1])
