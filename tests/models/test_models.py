import ast
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from esc2c import contract
from esc2c.errors import Esc2cError
from esc2c.models import registry
from esc2c.models.blocks import BasicBlock, ConvBNAct, ESCNet
from esc2c.models.counting import count_macs, count_params, layer_table
from esc2c.models.registry import build_from_config, build_model, layer_widths, model_config

IN = (1, 32, 40)


def _convs_before_each_tap(model):
    counts, n = [], 0
    for i, stage in enumerate(model.stages):
        for m in stage.modules():
            if isinstance(m, ConvBNAct) and not isinstance(m, BasicBlock):
                n += 1
        if i in model.aux_taps:
            counts.append(n)
    return counts


@pytest.mark.parametrize("arch,n_aux", [("vgg11", 4), ("resnet18", 3), ("small", 2)])
def test_build_and_forward(arch, n_aux):
    torch.manual_seed(0)
    m = build_model(arch, 7, width=0.25, in_shape=IN)
    assert isinstance(m, ESCNet)
    out = m.forward_all(torch.randn(3, *IN))
    assert out.logits.shape == (3, 7)
    assert len(out.aux_logits) == n_aux and all(a.shape == (3, 7) for a in out.aux_logits)
    assert len(out.features) == n_aux
    m.eval()
    x = torch.randn(2, *IN)
    assert torch.equal(m(x), m.forward_all(x).logits)


def test_vgg11_layout():
    m = build_model("vgg11", 10, width=0.25, in_shape=IN)
    convs = [mod for mod in m.stages.modules() if isinstance(mod, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [16, 32, 64, 64, 128, 128, 128, 128]
    assert len(m.head.hidden) == 2 and len(m.head.hidden) + 1 == 3           # 3 FC layers
    assert _convs_before_each_tap(m) == [1, 2, 4, 6]
    assert sum(isinstance(mod, nn.MaxPool2d) for mod in m.stages.modules()) == 4


def test_resnet18_layout():
    m = build_model("resnet18", 10, width=0.25, in_shape=IN)
    blocks = [mod for mod in m.modules() if isinstance(mod, BasicBlock)]
    assert len(blocks) == 8
    assert [b.conv2.conv.out_channels for b in blocks] == [16, 16, 32, 32, 64, 64, 128, 128]
    assert [b.conv1.conv.stride[0] for b in blocks] == [1, 1, 2, 1, 2, 1, 2, 1]
    assert len(m.head.hidden) == 0
    # 17 conv on the main path (stem + 16 in blocks) plus 3 projection shortcuts
    convs = [mod for mod in m.stages.modules() if isinstance(mod, nn.Conv2d)]
    assert len(convs) == 20
    assert m.aux_taps == (1, 2, 3)


def test_config_roundtrip_nonuniform_widths():
    torch.manual_seed(1)
    m = build_model("resnet18", 5, width=0.25, in_shape=IN)
    cfg = model_config(m)
    cfg["stages"][2][0]["cmid"] = 7           # a pruned-looking, non-uniform width
    cfg["stages"][4][1]["cmid"] = 3
    m2 = build_from_config(cfg)
    assert model_config(m2) == cfg
    m3 = build_from_config(model_config(m2))
    m3.load_state_dict(m2.state_dict())
    x = torch.randn(2, *IN)
    m2.eval(), m3.eval()
    assert torch.equal(m2(x), m3(x))


def test_no_aux_and_bad_inputs():
    m = build_model("small", 4, in_shape=IN, aux=False)
    assert len(m.aux_heads) == 0 and m.forward_all(torch.randn(1, *IN)).aux_logits == []
    with pytest.raises(Esc2cError, match="unknown architecture"):
        build_model("vgg16", 4)
    with pytest.raises(Esc2cError, match="width"):
        build_model("small", 4, width=0)
    cfg = model_config(m)
    del cfg["head"]
    with pytest.raises(Esc2cError, match="head"):
        build_from_config(cfg)


def test_count_params_by_hand():
    m = build_model("small", 10, width=1.0, in_shape=IN)
    chans = [1, 16, 32, 32, 64, 64]
    conv = sum(chans[i] * chans[i + 1] * 9 + 2 * chans[i + 1] for i in range(5))   # weights + BN affine
    fc = 64 * 10 + 10
    assert count_params(m) == conv + fc
    aux = sum(c * c * 9 + 2 * c + c * 10 + 10 for c in (32, 32))
    assert count_params(m, include_aux=True) == conv + fc + aux


def test_count_macs_by_hand():
    m = build_model("small", 10, width=1.0, in_shape=IN)
    h, w = IN[1], IN[2]
    expect = 1 * 16 * 9 * h * w
    expect += 16 * 32 * 9 * (h // 2) * (w // 2)
    expect += 32 * 32 * 9 * (h // 4) * (w // 4)
    expect += (32 * 64 + 64 * 64) * 9 * (h // 8) * (w // 8)
    expect += 64 * 10
    assert count_macs(m, IN) == expect
    rows = layer_table(m, IN)
    assert [r.kind for r in rows] == ["conv"] * 5 + ["fc"]
    assert rows[1].in_shape == (16, h // 2, w // 2)
    assert count_macs(m, IN, include_aux=True) > expect


def test_layer_widths():
    m = build_model("vgg11", 10, width=0.5, in_shape=IN)
    widths = [w for _, w in layer_widths(m)]
    assert widths == [32, 64, 128, 128, 256, 256, 256, 256, 256, 256, 10]


def test_registry_has_one_builder_per_architecture_and_no_import_cycle():
    assert set(registry.ARCH_CONFIGS) == set(contract.ARCHS)
    pkg = Path(registry.__file__).parent
    deps = {}
    for f in pkg.glob("*.py"):  # every import of an esc2c.models module, at any level of the file
        deps[f.stem] = {n.module.rsplit(".", 1)[1] for n in ast.walk(ast.parse(f.read_text()))
                        if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("esc2c.models.")}

    def reaches(a, b, seen=()):
        return any(d == b or (d not in seen and reaches(d, b, seen + (d,))) for d in deps.get(a, ()))
    assert not [m for m in deps if reaches(m, m)]


def test_head_dropout_trains_only_and_survives_pruning_and_quantization():
    """dropout: VGG-11's two hidden head layers drop in training only; the pruned model keeps it, the INT8
    program has no trace of it (same integer outputs as the model without it), and a head without hidden
    layers is refused by name."""
    from esc2c.compress.cup import prune_to_ratio
    from esc2c.quant import qat
    torch.manual_seed(0)
    m = build_model("vgg11", 4, width=0.25, in_shape=IN, dropout=0.5)
    torch.manual_seed(0)
    plain = build_model("vgg11", 4, width=0.25, in_shape=IN)
    assert model_config(m)["head"]["dropout"] == 0.5 and model_config(plain)["head"]["dropout"] == 0.0
    x = torch.randn(8, *IN, generator=torch.Generator().manual_seed(1))
    m.eval(), plain.eval()
    assert torch.equal(m(x), plain(x))                              # the same weights, identity in eval
    m.train()
    assert not torch.equal(m(x), m(x))                               # a fresh mask per call in training
    m.eval()
    plain.load_state_dict(m.state_dict())                            # (training-mode calls moved BN statistics)
    pruned = prune_to_ratio(m, 0.5).model
    assert model_config(pruned)["head"]["dropout"] == 0.5
    q, qp = (qat.calibrate(qat.quantize_model(n), [x]).eval() for n in (m, plain))
    xi = qat.quantize_input(q, x)
    assert np.array_equal(q.integer_forward(xi, "double")["logits"], qp.integer_forward(xi, "double")["logits"])
    for arch in ("small", "resnet18"):
        with pytest.raises(Esc2cError, match=f"dropout: the {arch} head has no hidden layers"):
            build_model(arch, 4, in_shape=IN, dropout=0.3)
    with pytest.raises(Esc2cError, match="dropout must be in"):
        build_model("vgg11", 4, in_shape=IN, dropout=1.0)
