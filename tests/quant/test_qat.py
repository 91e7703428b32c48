"""QAT simulates the integer contract: integer program == numpy reference (every layer, 0 differences),
fake-quant == integers within 1 LSB, BN folding, pools, quantizer modes, errors."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from esc2c import contract
from esc2c.compress.losses import make_loss
from esc2c.errors import Esc2cError
from esc2c.models.blocks import AuxHead, BasicBlock, ConvBNAct, ESCNet, Head
from esc2c.models.registry import build_model
from esc2c.quant import fakequant, qat, reference
from esc2c.quant import intparams as ip

IN_SHAPE = (1, 20, 24)


def _randomize_bn(model):
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) * 0.6 - 0.3)
    return model


def vgg_style():
    torch.manual_seed(0)
    stages = [nn.Sequential(ConvBNAct(1, 8), nn.MaxPool2d(2)),
              nn.Sequential(ConvBNAct(8, 16), ConvBNAct(16, 16, groups=2), nn.AvgPool2d(2)),
              nn.Sequential(ConvBNAct(16, 24, kernel=(3, 1)), nn.AvgPool2d(3, 2, 1), ConvBNAct(24, 24, relu=False))]
    return _randomize_bn(ESCNet(stages, Head(24, [16], 5), aux_taps=(0, 1),
                                aux_heads=[AuxHead(8, 8, 5), AuxHead(16, 8, 5)]))


def resnet_style():
    torch.manual_seed(0)
    stages = [nn.Sequential(ConvBNAct(1, 8)),
              nn.Sequential(BasicBlock(8, 8, 8), BasicBlock(8, 12, 16, stride=2)),
              nn.Sequential(BasicBlock(16, 10, 16), nn.MaxPool2d(3, 2, 1))]
    return _randomize_bn(ESCNet(stages, Head(16, [], 5), aux_taps=(1,), aux_heads=[AuxHead(16, 8, 5)]))


MODELS = {"vgg": vgg_style, "resnet": resnet_style}


def _calibrated(make):
    model = make()
    x = torch.randn(24, *IN_SHAPE, generator=torch.Generator().manual_seed(2))
    q = qat.calibrate(qat.quantize_model(model), [x[:12], x[12:]]).eval()
    return model, q, x


def _conv_int64(x, w, stride, pad, groups):
    """The oracle: a convolution as explicit int64 sums over every output position (slow, obviously exact)."""
    n, c, h, wd = x.shape
    co, cig, kh, kw = w.shape
    xp = np.pad(x.astype(np.int64), ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])))
    oh, ow = (h + 2 * pad[0] - kh) // stride[0] + 1, (wd + 2 * pad[1] - kw) // stride[1] + 1
    out = np.zeros((n, co, oh, ow), np.int64)
    for o in range(co):
        g = o // (co // groups)
        for i in range(oh):
            for j in range(ow):
                win = xp[:, g * cig:(g + 1) * cig, i * stride[0]:i * stride[0] + kh, j * stride[1]:j * stride[1] + kw]
                out[:, o, i, j] = (win * w[o].astype(np.int64)).sum(axis=(1, 2, 3))
    return out


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 3), st.sampled_from([1, 2, 3]), st.integers(1, 3), st.integers(1, 3), st.integers(1, 2),
       st.integers(1, 2), st.integers(0, 1), st.integers(3, 7), st.integers(0, 2**31 - 1))
def test_reference_conv_equals_int64_sums(n, groups, cig, cog, kh, stride, pad, size, seed):
    """reference.conv2d computes in float BLAS for speed; on int8-range operands (zero-centred inputs reach
    255) it must equal exact int64 sums, grouped, strided and padded, and refuse operands it cannot sum
    exactly."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-255, 256, (n, groups * cig, size, size + 1))
    w = rng.integers(-127, 128, (groups * cog, cig, kh, kh + 1 if kh == 1 else kh))
    got = reference.conv2d(x, w, (stride, stride), (pad, pad), groups)
    assert got.dtype == np.int64 and np.array_equal(got, _conv_int64(x, w, (stride, stride), (pad, pad), groups))
    with pytest.raises(Esc2cError, match="exceeds 2\\^53"):
        reference.conv2d(x * 2**40, w, (stride, stride), (pad, pad), groups)


@pytest.mark.parametrize("arch", list(MODELS))
@pytest.mark.parametrize("rounding", contract.ROUNDING_MODES)
def test_integer_forward_runs_every_layer_of_the_program(arch, rounding):
    """QAT's integer mode is the reference interpreter on the net's own program: every layer, int8, using the
    int8 range (the exactness of that interpreter is checked above and against the C in
    tests/compiler/test_compiler_esc2c_export.py)."""
    _, q, x = _calibrated(MODELS[arch])
    xi = qat.quantize_input(q, torch.randn(6, *IN_SHAPE, generator=torch.Generator().manual_seed(3)) * 1.5)
    got = q.integer_forward(xi, rounding)
    prog = q.integer_program(IN_SHAPE)
    assert set(got) >= {L["output"] for L in prog["layers"]} and len(got) >= 10
    assert all(v.dtype == np.int8 and len(v) == 6 for v in got.values())
    assert len(np.unique(got["logits"])) >= 5 and max(len(np.unique(v)) for v in got.values()) > 100


def test_rounding_modes_differ_somewhere():
    _, q, _ = _calibrated(resnet_style)
    xi = qat.quantize_input(q, torch.randn(6, *IN_SHAPE, generator=torch.Generator().manual_seed(3)))
    a, b = q.integer_forward(xi, "double"), q.integer_forward(xi, "single")
    assert sum(int(np.sum(a[k] != b[k])) for k in a) > 0


@pytest.mark.parametrize("arch", list(MODELS))
def test_fake_quant_matches_integers_within_one_lsb(arch):
    _, q, x = _calibrated(MODELS[arch])
    xi = qat.quantize_input(q, x)
    s, zp = q.input_q.qparams()
    x_grid = torch.from_numpy((xi.astype(np.float32) - zp) * s)
    fq = q.fake_quant_codes(x_grid)
    for rounding in contract.ROUNDING_MODES:
        ints = q.integer_forward(xi, rounding)
        diffs = np.concatenate([np.abs(fq[k].astype(int) - ints[k].astype(int)).ravel() for k in ints])
        within = float(np.mean(diffs <= 1))
        print(f"{arch} {rounding}: {within:.5f} of {diffs.size} elements within 1 LSB, "
              f"{np.mean(diffs == 0):.5f} equal, max {diffs.max()}")
        assert within >= 0.995
        assert np.mean(diffs == 0) >= 0.95
        assert np.mean(fq["logits"].argmax(1) == ints["logits"].argmax(1)) >= 0.9


def test_bn_folding_keeps_the_float_function():
    model, q, x = _calibrated(resnet_style)
    model.eval()
    q.set_mode(calibrating=False, fake_quant=False)
    ref = model.forward_all(x)
    got = q.forward_all(x)
    assert torch.allclose(ref.logits, got.logits, atol=1e-4)
    for a, b in zip(ref.aux_logits, got.aux_logits):
        assert torch.allclose(a, b, atol=1e-4)
    q.set_mode(calibrating=False, fake_quant=True)
    assert not torch.allclose(q(x), ref.logits, atol=1e-6)  # fake quantization is really on


def test_weights_biases_and_pools_follow_the_contract():
    _, q, _ = _calibrated(vgg_style)
    prog = q.integer_program(IN_SHAPE)
    T = prog["tensors"]
    ops = [L["op"] for L in prog["layers"]]
    assert ops.count("conv") == 5 and ops.count("fc") == 2 and "avgpool" in ops and "maxpool" in ops
    for L in prog["layers"]:
        if L["op"] in ("conv", "fc"):
            w = L["weight"]
            assert w.dtype == np.int8 and L["bias"].dtype == np.int32 and w.min() >= -127
            if L["op"] == "conv":  # per output channel: every channel reaches +-127
                assert L["w_scale"].shape == (w.shape[0],) and L["w_scale"].dtype == np.float32
                assert np.all(np.abs(w.reshape(w.shape[0], -1)).max(1) == 127)
            else:  # per tensor
                assert np.ndim(L["w_scale"]) == 0 and np.abs(w).max() == 127
            if L["act"] == "relu":
                assert T[L["output"]]["zero_point"] == -128
        if L["op"] in ("maxpool", "avgpool", "flatten"):
            src, dst = T[L["inputs"][0]], T[L["output"]]
            assert (src["scale"], src["zero_point"]) == (dst["scale"], dst["zero_point"])
        for t in L["inputs"] + [L["output"]]:
            assert isinstance(T[t]["scale"], np.float32)


def test_avgpool_rounds_like_arm_avgpool_s8():
    # one channel 3x3, kernel 2, stride 2, padding 1 -> windows of 1, 2, 2 and 4 valid taps
    x = np.array([[[[1, 2, -3], [4, -5, 6], [-7, 8, 9]]]], dtype=np.int8)
    got = reference.avgpool(x, (2, 2), (2, 2), (1, 1))
    # valid taps: [1] -> 1; [2,-3] sum -1 -> (-1-1)/2 = -1; [4,-7] sum -3 -> (-3-1)/2 = -2;
    # [-5,6,8,9] sum 18 -> (18+2)/4 = 5
    assert got.tolist() == [[[[1, -1], [-2, 5]]]]
    ties = np.array([[[[1, 2]], [[-1, -2]], [[0, 0]], [[3, 4]]]], dtype=np.int8).reshape(1, 4, 1, 2)
    # 1.5 -> 2, -1.5 -> -2 (away from zero), 0, 3.5 -> 4
    assert reference.avgpool(ties, (1, 2), (1, 1), (0, 0)).ravel().tolist() == [2, -2, 0, 4]
    t = fakequant.cmsis_avgpool_int(torch.from_numpy(x.astype(np.int64)), (2, 2), (2, 2), (1, 1))
    assert t.tolist() == got.tolist()


def test_qat_trains_with_pokd_loss_through_forward_all():
    model, teacher, x = _calibrated(vgg_style)
    student = qat.calibrate(qat.quantize_model(model), [x]).train()
    y = torch.randint(0, 5, (x.shape[0],), generator=torch.Generator().manual_seed(4))
    loss_fn = make_loss("pokd")
    opt = torch.optim.Adam(student.parameters(), lr=1e-3)
    with torch.no_grad():
        t_out = teacher.forward_all(x)
    before = student.stages[0][0].weight.detach().clone()
    s_out = student.forward_all(x)
    assert len(s_out.aux_logits) == 2 and len(s_out.features) == 2
    loss, parts = loss_fn(s_out, t_out, y)
    opt.zero_grad()
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in student.parameters())
    opt.step()
    assert not torch.equal(before, student.stages[0][0].weight)


def test_checkpoint_round_trip_restores_identical_integers():
    model, q, x = _calibrated(resnet_style)
    back = qat.load_qat(model, q.state_dict()).eval()
    xi = qat.quantize_input(q, x)
    a, b = q.integer_forward(xi), back.integer_forward(xi)
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_errors_are_clear():
    bad = ESCNet([nn.Sequential(ConvBNAct(1, 4), nn.Sigmoid())], Head(4, [], 3))
    with pytest.raises(Esc2cError, match=r"s0\.1: Sigmoid cannot be quantized"):
        qat.quantize_model(bad)
    q = qat.quantize_model(vgg_style())
    with pytest.raises(Esc2cError, match="never calibrated"):
        q.integer_program(IN_SHAPE)
    with pytest.raises(Esc2cError, match="rounding"):
        reference.run({"tensors": {}, "layers": [], "input": "input"}, np.zeros((1,), np.int8), "nearest")


@pytest.mark.parametrize("arch", ["vgg11", "resnet18", "small"])
def test_registry_models_quantize_and_match_the_reference(arch):
    shape = (1, 16, 24)
    model = _randomize_bn(build_model(arch, 6, 0.125, shape)).eval()
    x = torch.randn(8, *shape, generator=torch.Generator().manual_seed(5))
    q = qat.calibrate(qat.quantize_model(model), [x]).eval()
    xi = qat.quantize_input(q, x[:3])
    got = q.integer_forward(xi, "double")
    want = reference.run(q.integer_program(shape), xi, "double")
    assert all(np.array_equal(got[k], want[k]) for k in want)
    assert len(q.forward_all(x).aux_logits) == len(model.aux_heads) > 0
