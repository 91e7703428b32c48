"""The quantization debugger: per-layer float vs fake-quant vs integer program, and the layer it blames."""
import copy
import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from esc2c.cli import main
from esc2c.errors import Esc2cError
from esc2c.models.blocks import BasicBlock, ConvBNAct, ESCNet, Head
from esc2c.quant import debug, debug_report, qat, qlayers, reference

IN_SHAPE = (1, 16, 20)


def _model() -> ESCNet:
    torch.manual_seed(0)
    stages = [nn.Sequential(ConvBNAct(1, 8), nn.MaxPool2d(2)),
              nn.Sequential(BasicBlock(8, 8, 12, stride=2)),
              nn.Sequential(ConvBNAct(12, 12, groups=3), nn.AvgPool2d(2))]
    m = ESCNet(stages, Head(12, [10], 4)).eval()
    with torch.no_grad():  # BatchNorm statistics that are not the identity
        for bn in (b for b in m.modules() if isinstance(b, nn.BatchNorm2d)):
            bn.running_mean.uniform_(-0.2, 0.2)
            bn.running_var.uniform_(0.5, 2.0)
    return m


@pytest.fixture(scope="module")
def setup():
    model = _model()
    x = torch.randn(96, *IN_SHAPE)
    q = qat.calibrate(qat.quantize_model(model), [x[:48], x[48:]]).eval()
    return model, q, x


def test_every_layer_in_table_and_plot(setup, tmp_path):
    model, q, x = setup
    qd = debug.debug_qat(q, model, x, labels=np.arange(len(x)) % 4, batch=40)
    prog = q.integer_program(IN_SHAPE)
    names = ["input"] + [L["output"] for L in prog["layers"]]
    assert [r["name"] for r in qd.layers] == names
    assert qd.n_inputs == 96 and qd.paths == ["fq", "int"]
    for r in qd.layers:
        assert math.isfinite(r["int_sqnr_db"]) and r["int_max_err_lsb"] >= 0
        assert r["int_max_err"] == pytest.approx(r["int_max_err_lsb"] * r["scale"])
    d = debug_report.write(qd, tmp_path / "qd.json", tmp_path / "qd.png")
    assert (tmp_path / "qd.png").stat().st_size > 10_000
    assert json.loads((tmp_path / "qd.json").read_text()) == d
    table = debug_report.format_table(d)
    assert all(f"| {n} " in table for n in names)
    assert len([ln for ln in table.splitlines() if ln.startswith("| ")]) == len(names) + 1
    assert "accuracy integer program" in table


def test_integer_program_agrees_with_fake_quant(setup):
    model, q, x = setup
    qd = debug.debug_qat(q, model, x)
    for r in qd.layers:
        assert r["fq_agree"] >= 0.95, r["name"]       # the two differ only by rounding of the requantization
        assert r["fq_max_code_diff"] <= 4, r["name"]  # off-by-one codes add up through a residual block
        assert abs(r["fq_sqnr_db"] - r["int_sqnr_db"]) < 1.0, r["name"]
    assert qd.logits["int_top1_agree"] >= 0.9 and qd.logits["fq_top1_agree"] >= 0.9
    assert min(r["int_sqnr_db"] for r in qd.layers) > 15  # a calibrated model, same weights: quantization noise only


@pytest.mark.parametrize("layer", ["s0.0", "s1.0.conv1", "s2.0"])
def test_damaged_layer_is_named_worst(setup, layer):
    model, q, x = setup
    clean = debug.debug_qat(q, model, x)
    bad = copy.deepcopy(q)
    mod = {m.name: m for m in bad.modules() if isinstance(m, qlayers.QConv)}[layer]
    with torch.no_grad():  # 8x the weights against a frozen output range: the activations clip
        mod.weight.mul_(8.0)
        mod.bias.mul_(8.0)
    qd = debug.debug_qat(bad, model, x)
    assert qd.worst == layer
    assert qd.layer(layer)["int_sqnr_db"] < clean.layer(layer)["int_sqnr_db"] - 20
    assert qd.layer(layer)["int_max_err_lsb"] > 50
    upstream = [r["name"] for r in qd.layers][:[r["name"] for r in qd.layers].index(layer)]
    for name in upstream:  # layers before the damaged one are untouched
        assert qd.layer(name)["int_sqnr_db"] == clean.layer(name)["int_sqnr_db"]
    assert min(r["fq_agree"] for r in qd.layers) >= 0.85


def test_float_against_itself_is_infinite_sqnr(setup):
    model, q, x = setup
    prog = q.integer_program(IN_SHAPE)
    f = debug.float_activations(model, x)
    fq_same = debug.float_activations(copy.deepcopy(model), x)
    dbg = debug.QuantDebugger(prog)
    dbg.add_batch(reference.run(prog, qat.quantize_input(q, x)), f, fq_same)
    qd = dbg.result()
    for r in qd.layers:
        assert r["fq_sqnr_db"] == math.inf and r["fq_max_err"] == 0.0, r["name"]
        assert math.isfinite(r["int_sqnr_db"])
    assert qd.to_dict()["layers"][1]["fq_sqnr_db"] == "inf"
    assert debug_report.format_table(qd.to_dict()).count("| inf |") == len(qd.layers)


def test_float_activations_match_the_float_forward(setup):
    model, _, x = setup
    f = debug.float_activations(model, x[:4])
    with torch.no_grad():
        assert np.allclose(f["logits"], model(x[:4]).double().numpy())
    assert f["s1.0"].shape == (4, 12, 4, 5) and f["head.flatten"].shape == (4, 12)


def test_sqnr_figures():
    assert debug.sqnr_db(100.0, 1.0) == pytest.approx(20.0)
    assert debug.sqnr_db(5.0, 0.0) == math.inf and debug.sqnr_db(0.0, 1.0) == -math.inf


def test_without_float_model_only_agreement(setup):
    _, q, x = setup
    qd = debug.debug_qat(q, None, x[:8])
    assert not qd.has_float and qd.worst is None
    assert all("int_sqnr_db" not in r and "fq_agree" in r for r in qd.layers)


def test_bad_inputs_are_named(setup):
    model, q, x = setup
    with pytest.raises(Esc2cError, match="N, C, H, W"):
        debug.debug_qat(q, model, x[0])
    prog = q.integer_program(IN_SHAPE)
    dbg = debug.QuantDebugger(prog)
    ints = reference.run(prog, qat.quantize_input(q, x[:4]))
    dbg.add_batch(ints, debug.float_activations(model, x[:4]))
    with pytest.raises(Esc2cError, match="every batch"):
        dbg.add_batch(ints)
    with pytest.raises(Esc2cError, match="no inputs"):
        debug.QuantDebugger(prog).result()


def test_cli_names_a_directory_that_is_neither(tmp_path, capsys):
    assert main(["qdebug", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "neither a compress run" in err
    assert main(["qdebug", str(tmp_path / "missing")]) == 1
    assert "no such directory" in capsys.readouterr().err
