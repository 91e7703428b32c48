import math

import pytest
import torch
import torch.nn.functional as F

from esc2c.compress.losses import LOSSES, make_loss
from esc2c.errors import Esc2cError
from esc2c.models.blocks import ModelOutput
from esc2c.models.registry import build_model

IN = (1, 16, 24)


def softmax(v):
    e = [math.exp(a) for a in v]
    return [a / sum(e) for a in e]


def kl_t(s, t, T):
    """T^2 * sum_k p_t,k (log p_t,k - log p_s,k) at temperature T."""
    ps, pt = softmax([a / T for a in s]), softmax([a / T for a in t])
    return T * T * sum(b * (math.log(b) - math.log(a)) for a, b in zip(ps, pt))


def ce(v, y):
    return -math.log(softmax(v)[y])


def test_pokd_hand_computed():
    T = 2.0
    s, t = [1.0, 0.5, -0.5], [2.0, 0.0, -1.0]
    hs1, hs2 = [0.2, 0.1, -0.3], [0.5, -0.2, 0.1]
    ht1, ht2 = [1.0, -1.0, 0.0], [0.3, 0.6, -0.2]
    y = 0
    # eq. 5-6 by hand. Head 1 sees only teacher head 1 (lambda_11 = 1).
    # Head 2: h1^t . h2^s = 0.5 + 0.2 + 0 = 0.7 ; h2^t . h2^s = 0.15 - 0.12 - 0.02 = 0.01
    lam = softmax([0.7, 0.01])
    assert lam[0] == pytest.approx(1 / (1 + math.exp(-0.69)))
    fused2 = [lam[0] * a + lam[1] * b for a, b in zip(ht1, ht2)]
    expect_kd = kl_t(s, t, T)
    expect_aux_kd = kl_t(hs1, ht1, T) + kl_t(hs2, fused2, T)
    expect_aux_ce = ce(hs1, y) + ce(hs2, y)
    expect = expect_kd + ce(s, y) + expect_aux_kd + expect_aux_ce

    tt = lambda v: torch.tensor([v], dtype=torch.float64)
    so = ModelOutput(tt(s), [tt(hs1), tt(hs2)])
    to = ModelOutput(tt(t), [tt(ht1), tt(ht2)])
    loss, parts = make_loss("pokd", T=T)(so, to, torch.tensor([y]))
    assert loss.item() == pytest.approx(expect, rel=1e-12)
    assert parts["kd"] == pytest.approx(expect_kd, rel=1e-12)
    assert parts["aux_kd"] == pytest.approx(expect_aux_kd, rel=1e-12)
    assert parts["aux_ce"] == pytest.approx(expect_aux_ce, rel=1e-12)

    # ALP-KD: head 1 attends to both teacher heads; MHKD: head j learns from teacher head j only
    alp = make_loss("alpkd", T=T).targets(so, to)
    lam1 = softmax([sum(a * b for a, b in zip(ht1, hs1)), sum(a * b for a, b in zip(ht2, hs1))])
    assert alp[0][0].tolist() == pytest.approx([lam1[0] * a + lam1[1] * b for a, b in zip(ht1, ht2)])
    assert alp[1][0].tolist() == pytest.approx(fused2)
    mh = make_loss("mhkd", T=T).targets(so, to)
    assert mh[0][0].tolist() == ht1 and mh[1][0].tolist() == ht2


def test_aux_weight_and_constant_attention_target():
    T = 2.0
    tt = lambda v: torch.tensor([v], dtype=torch.float64)
    so = ModelOutput(tt([1.0, 0.5, -0.5]), [tt([0.2, 0.1, -0.3]), tt([0.5, -0.2, 0.1])])
    to = ModelOutput(tt([2.0, 0.0, -1.0]), [tt([1.0, -1.0, 0.0]), tt([0.3, 0.6, -0.2])])
    y = torch.tensor([0])
    full, p = make_loss("pokd", T=T)(so, to, y)
    quarter, q = make_loss("pokd", T=T, aux_weight=0.25)(so, to, y)
    assert q == p                                 # the same terms, weighted differently
    assert quarter.item() == pytest.approx(p["ce"] + p["kd"] + 0.25 * (p["aux_kd"] + p["aux_ce"]), rel=1e-12)
    none, _ = make_loss("pokd", T=T, aux_weight=0.0)(so, to, y)
    assert none.item() == pytest.approx(p["ce"] + p["kd"], rel=1e-12)

    # attention_grad=False: the fused target is a constant, so d(T^2 KL)/d h2^s = T (softmax(h2^s/T) - target)
    h2 = so.aux_logits[1].clone().requires_grad_(True)
    loss = make_loss("pokd", T=T, attention_grad=False)
    target = loss.targets(so, to)[1]
    loss(ModelOutput(so.logits, [so.aux_logits[0], h2]), to, y)[0].backward()
    expect = T * (torch.softmax(h2.detach() / T, 1) - torch.softmax(target / T, 1)) \
        + (torch.softmax(h2.detach(), 1) - F.one_hot(y, 3))
    assert torch.allclose(h2.grad, expect, atol=1e-12)
    h2.grad = None                                # as written (eq. 5-6), lambda passes gradient too
    make_loss("pokd", T=T)(ModelOutput(so.logits, [so.aux_logits[0], h2]), to, y)[0].backward()
    assert not torch.allclose(h2.grad, expect, atol=1e-6)
    with pytest.raises(Esc2cError, match="takes no options"):
        make_loss("kd", T=T, aux_weight=0.5)
    with pytest.raises(Esc2cError, match="aux_weight must be >= 0"):
        make_loss("pokd", T=T, aux_weight=-1.0)


def test_kl_parts_vanish_when_student_equals_teacher():
    torch.manual_seed(0)
    logits = torch.randn(5, 4)
    aux = [torch.randn(5, 4), torch.randn(5, 4)]
    y = torch.randint(0, 4, (5,))
    o = ModelOutput(logits, aux)
    _, p = make_loss("kd")(o, o, y)
    assert p["kd"] == pytest.approx(0.0, abs=1e-6)
    assert p["ce"] == pytest.approx(F.cross_entropy(logits, y).item())
    _, p = make_loss("mhkd")(o, o, y)
    assert p["kd"] == pytest.approx(0.0, abs=1e-6) and p["aux_kd"] == pytest.approx(0.0, abs=1e-6)
    # PoKD with one aux head: the fused target is the teacher's own head
    o1 = ModelOutput(logits, aux[:1])
    _, p = make_loss("pokd")(o1, o1, y)
    assert p["aux_kd"] == pytest.approx(0.0, abs=1e-6)
    # ...but with two heads, head 2's target mixes teacher heads 1 and 2, so it is not zero
    _, p = make_loss("pokd")(o, o, y)
    assert p["aux_kd"] > 1e-4
    loss, p = make_loss("ce_aux")(o, None, y)
    assert loss.item() == pytest.approx(sum(F.cross_entropy(v, y).item() for v in [logits, *aux]), rel=1e-6)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_each_loss_trains_the_right_parameters(name):
    torch.manual_seed(0)
    student = build_model("small", 4, width=0.25, in_shape=IN)
    teacher = build_model("small", 4, width=0.5, in_shape=IN).eval()
    loss_fn = make_loss(name, student=student, teacher=teacher, in_shape=IN)
    x, y = torch.randn(6, *IN), torch.randint(0, 4, (6,))
    with torch.no_grad():
        t_out = teacher.forward_all(x) if loss_fn.needs_teacher else None
    loss, parts = loss_fn(student.forward_all(x), t_out, y)
    assert torch.isfinite(loss) and loss.item() > 0 and all(math.isfinite(v) for v in parts.values())
    loss.backward()
    main_grad = student.stages[0][0].conv.weight.grad
    assert main_grad is not None and main_grad.abs().sum() > 0
    aux_grads = [p.grad for p in student.aux_heads.parameters()]
    if loss_fn.uses_aux:
        assert all(g is not None and g.abs().sum() > 0 for g in aux_grads[:1])
    else:
        assert all(g is None for g in aux_grads)
    assert all(p.grad is None for p in teacher.parameters())
    if name == "fitnet":
        assert loss_fn.regressor.weight.grad.abs().sum() > 0
        assert len(list(loss_fn.parameters())) == 1


def test_loss_errors():
    o = ModelOutput(torch.zeros(2, 3), [])
    y = torch.zeros(2, dtype=torch.long)
    with pytest.raises(Esc2cError, match="unknown loss"):
        make_loss("crd")
    with pytest.raises(Esc2cError, match="needs a teacher"):
        make_loss("kd")(o, None, y)
    with pytest.raises(Esc2cError, match="aux heads"):
        make_loss("pokd")(o, o, y)
    with pytest.raises(Esc2cError, match="temperature"):
        make_loss("kd", T=0)
    with pytest.raises(Esc2cError, match="fitnet"):
        make_loss("fitnet")
