"""The quantization debugger's C column: an emitted project's host build equals the integer program on every
tensor it stores, and the float comparison runs through it."""
import math
import shutil

import pytest
import torch
from torch import nn

from esc2c.cli import main
from esc2c.compiler import c_qdebug as cq
from esc2c.compiler.emit import emit
from esc2c.errors import Esc2cError
from esc2c.features import FeatureSpec
from esc2c.models.blocks import BasicBlock, ConvBNAct, ESCNet, Head
from esc2c.quant import debug, export, qat

pytestmark = pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not installed")
IN_SHAPE = (1, 16, 20)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("qdebug_c")
    torch.manual_seed(0)
    stages = [nn.Sequential(ConvBNAct(1, 8), nn.MaxPool2d(2)),
              nn.Sequential(BasicBlock(8, 8, 12, stride=2)),
              nn.Sequential(ConvBNAct(12, 12, groups=3))]
    model = ESCNet(stages, Head(12, [10], 4)).eval()
    x = torch.randn(64, *IN_SHAPE)
    q = qat.calibrate(qat.quantize_model(model), [x[:32], x[32:]]).eval()
    spec = FeatureSpec(sample_rate=8000, clip_seconds=0.336, n_fft=256, win_length=256, hop_length=128, n_mels=16,
                       mean=-40.0, std=20.0)
    export.export_onnx(q, tmp / "model.onnx", IN_SHAPE, feature_spec=spec, class_names=list("abcd"))
    emit(tmp / "model.onnx", tmp / "out", n_vectors=2, fuse="none")  # every conv output stored
    proj = cq.load_project(tmp / "out")
    proj.build("double")
    return model, q, x, proj


def test_c_column_equals_integer_program(project):
    model, q, x, proj = project
    assert cq.same_program(q.integer_program(IN_SHAPE), proj.program) is None
    qd = debug.debug_qat(q, model, x[:24], c_runner=proj.run_c, batch=10)
    assert qd.paths == ["fq", "int", "c"]
    with_c = [r for r in qd.layers if "c_agree" in r]
    stored = {r["name"] for r in with_c}
    assert {"s0.0", "s0.1", "s1.0.conv1", "s1.0.conv2", "s1.0.shortcut", "s1.0", "s2.0", "head.fc0",
            "logits"} <= stored
    for r in with_c:
        assert r["c_agree"] == 1.0 and r["c_max_code_diff"] == 0, r["name"]
        assert r["c_sqnr_db"] == r["int_sqnr_db"] and r["c_max_err_lsb"] == r["int_max_err_lsb"]
        assert math.isfinite(r["c_sqnr_db"])
    assert qd.logits["c_top1_agree"] == qd.logits["int_top1_agree"]


def test_project_without_float_model(project):
    _, _, _, proj = project
    qd = cq.debug_project(proj, 6, "double")
    assert qd.n_inputs == 6 and not qd.has_float and qd.notes
    rows = [r for r in qd.layers if "c_agree" in r]
    assert len(rows) >= 9 and all(r["c_agree"] == 1.0 for r in rows)


def test_c_differs_when_the_program_does(project):
    model, q, x, proj = project
    other = qat.calibrate(qat.quantize_model(model), [x[:8]]).eval()  # other activation ranges
    assert "scale" in cq.same_program(other.integer_program(IN_SHAPE), proj.program)
    # the same C against another model's integer program: the debugger sees the mismatch
    qd = debug.debug_qat(other, model, x[:8], c_runner=proj.run_c)
    assert min(r["c_agree"] for r in qd.layers if "c_agree" in r) < 1.0


def test_cli_on_project(project, tmp_path, capsys):
    _, _, _, proj = project
    assert main(["qdebug", str(proj.out), "--inputs", "4", "-o", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| s1.0.conv2 | conv |" in out and (tmp_path / "quant_debug.png").is_file()
    assert (tmp_path / "quant_debug.json").is_file()
    assert main(["qdebug", str(proj.out), "--run", str(tmp_path / "nowhere")]) == 1
    assert "not finished" in capsys.readouterr().err


def test_load_project_names_a_broken_one(tmp_path):
    (tmp_path / "CMakeLists.txt").write_text("")
    with pytest.raises(Esc2cError, match="not an emitted project"):
        cq.load_project(tmp_path)
