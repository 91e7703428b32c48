import pytest
import torch

from esc2c.compress.cup import (apply_keep, channel_groups, plot_accuracy_vs_ratio, plot_widths, prune,
                                prune_to_ratio, ratio_sweep)
from esc2c.errors import Esc2cError
from esc2c.models.blocks import BasicBlock, ConvBNAct, LinearAct
from esc2c.models.counting import count_params
from esc2c.models.registry import build_from_config, build_model, model_config

IN = (1, 32, 40)


def _model(arch, width=0.25, seed=0):
    torch.manual_seed(seed)
    m = build_model(arch, 6, width=width, in_shape=IN)
    # non-trivial BN statistics so BN folding and slicing are exercised
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 2.0)
            mod.weight.data.uniform_(0.5, 1.5)
            mod.bias.data.uniform_(-0.2, 0.2)
    return m.eval()


def _outputs(m, x):
    with torch.no_grad():
        o = m.forward_all(x)
    return [o.logits, *o.aux_logits]


@pytest.mark.parametrize("arch", ["small", "vgg11", "resnet18"])
def test_t0_keeps_everything_and_outputs(arch):
    m = _model(arch)
    res = prune(m, 0.0)
    assert res.params_after == res.params_before == count_params(m)
    assert all(b == a for _, b, a in res.widths)
    x = torch.randn(3, *IN)
    for a, b in zip(_outputs(m, x), _outputs(res.model.eval(), x)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def _mask_removed(model, keep):
    """Zero the removed channels in place (BN affine / FC rows): their activations become exactly 0."""
    groups = {g.name: g for g in channel_groups(model)}
    with torch.no_grad():
        for name, kept in keep.items():
            g = groups[name]
            drop = sorted(set(range(g.size)) - set(kept))
            for p in g.producers:
                mod = model.get_submodule(p)
                if isinstance(mod, ConvBNAct):
                    mod.bn.weight[drop] = 0
                    mod.bn.bias[drop] = 0
                else:
                    assert isinstance(mod, LinearAct)
                    mod.fc.weight[drop] = 0
                    mod.fc.bias[drop] = 0


@pytest.mark.parametrize("arch", ["vgg11", "resnet18"])
def test_surgery_equals_masking(arch):
    """Physically removed channels == the same channels zeroed: slicing of convs, BN, shortcuts, FC and aux
    heads is right, and residual groups are cut consistently."""
    m = _model(arch)
    gen = torch.Generator().manual_seed(3)
    keep = {}
    for g in channel_groups(m):
        if g.prunable:
            n = max(1, g.size // 3)
            keep[g.name] = sorted(torch.randperm(g.size, generator=gen)[:n].tolist())
    pruned = apply_keep(m, keep).eval()
    _mask_removed(m, keep)
    x = torch.randn(4, *IN)
    for a, b in zip(_outputs(m, x), _outputs(pruned, x)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert count_params(pruned) < count_params(m) / 4
    # the pruned model is self-describing: rebuilt from its config it takes its own state dict
    again = build_from_config(model_config(pruned))
    again.load_state_dict(pruned.state_dict())


def test_resnet_groups_tie_identity_shortcuts():
    m = _model("resnet18")
    groups = {g.name: g for g in channel_groups(m)}
    stem = groups["stages.0.0"]
    assert stem.producers == ["stages.0.0", "stages.1.0.conv2", "stages.1.1.conv2"]
    assert "aux_heads.0.conv.conv" in stem.aux_consumers
    assert "stages.2.0.shortcut.conv" in stem.consumers and "stages.2.0.conv1.conv" in stem.consumers
    assert groups["stages.2.0.out"].producers == ["stages.2.0.conv2", "stages.2.0.shortcut", "stages.2.1.conv2"]
    res = prune_to_ratio(m, 0.8)
    p = res.model.eval()
    assert p(torch.randn(2, *IN)).shape == (2, 6)
    blocks = [b for b in p.modules() if isinstance(b, BasicBlock)]
    for b in blocks:
        if b.shortcut is None:
            assert b.conv1.conv.in_channels == b.conv2.conv.out_channels
    assert p.stages[0][0].conv.out_channels == blocks[0].conv2.conv.out_channels == blocks[1].conv2.conv.out_channels


@pytest.mark.parametrize("arch,ratio", [("vgg11", 0.97), ("vgg11", 0.9), ("resnet18", 0.97)])
def test_hits_requested_ratio(arch, ratio):
    m = _model(arch, width=0.5)
    res = prune_to_ratio(m, ratio)
    assert abs(res.ratio - ratio) <= 0.005
    assert res.params_after == count_params(res.model)            # the reported count is the model's
    assert res.params_before == count_params(m)
    assert res.model.forward_all(torch.randn(2, *IN)).logits.shape == (2, 6)
    assert len(res.model.aux_heads) == len(m.aux_heads)              # aux heads stay for distillation
    after = [a for _, _, a in res.widths]
    assert after == [w.out_features if isinstance(w, torch.nn.Linear) else w.out_channels
                     for n, w in res.model.named_modules()
                     if isinstance(w, (torch.nn.Conv2d, torch.nn.Linear)) and not n.startswith("aux")]
    assert len(set(a / b for _, b, a in res.widths[:-1])) > 1        # non-uniform widths


def test_bad_requests_and_plots(tmp_path):
    m = _model("small")
    with pytest.raises(Esc2cError, match="ratio"):
        prune_to_ratio(m, 1.0)
    with pytest.raises(Esc2cError, match="threshold"):
        prune(m, -1.0)
    with pytest.raises(Esc2cError, match="out of reach"):
        prune_to_ratio(m, 0.999)
    rows = ratio_sweep(m, [0.0, 0.5], lambda pm: float(count_params(pm)), tol=0.05)
    assert rows[0]["accuracy"] == count_params(m) and rows[1]["accuracy"] < rows[0]["accuracy"]
    plot_accuracy_vs_ratio(rows, tmp_path / "fig5.png")
    plot_widths(prune(m, 0.3).widths, tmp_path / "fig6.png")
    assert (tmp_path / "fig5.png").stat().st_size > 1000 and (tmp_path / "fig6.png").stat().st_size > 1000
