"""Training losses, selectable by name: the teacher's loss (eq. 4), PoKD (eq. 5-8) and the KD baselines.

Every loss is an ``nn.Module`` called as ``loss(student_out, teacher_out, y) -> (loss, parts)`` where the
outputs are :class:`~esc2c.models.blocks.ModelOutput` (logits, aux logits, tapped features), ``teacher_out``
is None for losses that need no teacher, and ``parts`` maps each term's name to its float value. Losses with
learnable parameters (FitNet's regressor) expose them as module parameters; the training loop optimises them
together with the student.

KL direction. The paper writes KL(p_s || p_t); like Hinton's knowledge distillation we distil with the
teacher's distribution as the target, KL(p_t(T) || p_s(T)) =
``kl_div(log_softmax(s / T), softmax(t / T), reduction="batchmean")``, scaled by T^2 so its gradients keep
the magnitude of the CE term. Teacher tensors are used as constants (the loop runs the teacher without grad).

  ce      CE(student logits, y)
  ce_aux  eq. 4: CE(logits, y) + sum_j CE(aux_j, y)                         (teacher training)
  kd      Hinton: CE(logits, y) + T^2 KL(logits || teacher logits)
  pokd    eq. 8: CE + T^2 KL on logits + sum_j [T^2 KL(aux_j || h'_j) + CE(aux_j, y)], with the fused teacher
          h'_j = sum_{i<=j} lambda_ij h_i^t and lambda_ij = softmax_{i<=j}(h_i^t . h_j^s) per sample (eq. 5-6;
          h are aux-head logits). Gradients flow through lambda as the equations are written.
  mhkd    one-to-one aux heads: as pokd with h'_j = h_j^t (student head j learns from teacher head j only)
  alpkd   all-to-one attention (ALP-KD): as pokd but lambda_ij is a softmax over ALL teacher heads i, so every
          student head attends to every teacher layer. Layer representations are the aux-head logits, the
          space teacher and pruned student share (their feature maps have different channel counts).
  fitnet  CE + hint_weight * MSE(regressor(student feature), teacher feature): a hint on the tapped feature map
          at ``hint_tap`` (default: the middle tap), through a learnable 1x1 conv regressor (student channels ->
          teacher channels). hint_weight defaults to 100, the weight usual for MSE hints on normalised maps.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from esc2c.errors import Esc2cError
from esc2c.models.blocks import ModelOutput


def kd_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, T: float) -> torch.Tensor:
    """T^2 KL(softmax(t/T) || softmax(s/T)), mean over the batch."""
    return F.kl_div(F.log_softmax(student_logits / T, dim=1), F.softmax(teacher_logits / T, dim=1),
                    reduction="batchmean") * (T * T)


def attention_fuse(teacher_aux: list[torch.Tensor], student_h: torch.Tensor, upto: int | None) -> torch.Tensor:
    """sum_i lambda_i h_i^t with lambda = softmax_i(h_i^t . h^s) over teacher heads i < ``upto`` (all if None).

    Per sample: h are [B, C] logits, the dot product is over classes, the softmax over heads.
    """
    heads = teacher_aux if upto is None else teacher_aux[:upto]
    ht = torch.stack(heads, dim=1)                            # [B, n, C]
    scores = torch.einsum("bnc,bc->bn", ht, student_h)         # h_i^t . h_j^s
    lam = torch.softmax(scores, dim=1)
    return torch.einsum("bn,bnc->bc", lam, ht)


class Loss(nn.Module):
    needs_teacher = False
    uses_aux = False
    uses_features = False      # reads the teacher's tapped feature maps

    def __init__(self, T: float = 4.0):
        super().__init__()
        if T <= 0:
            raise Esc2cError(f"distillation temperature T must be > 0 (got {T})")
        self.T = float(T)

    def _teacher(self, t):
        if self.needs_teacher and t is None:
            raise Esc2cError(f"loss {self.name!r} needs a teacher model")
        return t


class CELoss(Loss):
    name = "ce"

    def forward(self, s: ModelOutput, t, y):
        ce = F.cross_entropy(s.logits, y)
        return ce, {"ce": ce.item()}


class CEAuxLoss(Loss):
    """Eq. 4: CE on the main output plus CE on every aux head."""
    name = "ce_aux"
    uses_aux = True

    def forward(self, s: ModelOutput, t, y):
        ce = F.cross_entropy(s.logits, y)
        aux = sum((F.cross_entropy(h, y) for h in s.aux_logits), torch.zeros((), device=ce.device))
        return ce + aux, {"ce": ce.item(), "aux_ce": aux.item()}


class KDLoss(Loss):
    """Hinton: CE(y) + T^2 KL to the teacher's logits."""
    name = "kd"
    needs_teacher = True

    def forward(self, s: ModelOutput, t: ModelOutput, y):
        t = self._teacher(t)
        ce = F.cross_entropy(s.logits, y)
        kd = kd_kl(s.logits, t.logits, self.T)
        return ce + kd, {"ce": ce.item(), "kd": kd.item()}


class AuxKDLoss(Loss):
    """CE + T^2 KL on the logits, plus per student aux head j: T^2 KL to a teacher target + CE.

    ``mode`` picks the target: "causal" (PoKD: attention over teacher heads i <= j), "one" (MHKD: teacher
    head j), "all" (ALP-KD: attention over every teacher head).
    """
    needs_teacher = True
    uses_aux = True
    mode = "causal"
    OPTIONS = ("aux_weight", "attention_grad")   # what make_loss passes on

    def __init__(self, T: float = 4.0, aux_weight: float = 1.0, attention_grad: bool = True):
        super().__init__(T)
        if not aux_weight >= 0:
            raise Esc2cError(f"loss {self.name!r}: aux_weight must be >= 0 (got {aux_weight})")
        self.aux_weight = float(aux_weight)          # weight of the aux heads' terms (eq. 8: 1)
        self.attention_grad = bool(attention_grad)   # False: the fused teacher target is a constant

    def targets(self, s: ModelOutput, t: ModelOutput) -> list[torch.Tensor]:
        ns, nt = len(s.aux_logits), len(t.aux_logits)
        if ns == 0 or nt == 0:
            raise Esc2cError(f"loss {self.name!r} needs aux heads on student and teacher "
                             f"(student has {ns}, teacher {nt})")
        if self.mode != "all" and ns != nt:
            raise Esc2cError(f"loss {self.name!r} pairs aux heads by depth: student has {ns}, teacher {nt}")
        out = []
        for j, hs in enumerate(s.aux_logits):
            if self.mode == "one":
                out.append(t.aux_logits[j])
            else:
                hs_att = hs if self.attention_grad else hs.detach()
                out.append(attention_fuse(t.aux_logits, hs_att, j + 1 if self.mode == "causal" else None))
        return out

    def forward(self, s: ModelOutput, t: ModelOutput, y):
        t = self._teacher(t)
        ce = F.cross_entropy(s.logits, y)
        kd = kd_kl(s.logits, t.logits, self.T)
        aux_kd = torch.zeros((), device=ce.device)
        aux_ce = torch.zeros((), device=ce.device)
        for hs, target in zip(s.aux_logits, self.targets(s, t)):
            aux_kd = aux_kd + kd_kl(hs, target, self.T)
            aux_ce = aux_ce + F.cross_entropy(hs, y)
        total = kd + ce + self.aux_weight * (aux_kd + aux_ce)
        return total, {"ce": ce.item(), "kd": kd.item(), "aux_kd": aux_kd.item(), "aux_ce": aux_ce.item()}


class PoKDLoss(AuxKDLoss):
    name = "pokd"

    mode = "causal"


class MHKDLoss(AuxKDLoss):
    name = "mhkd"

    mode = "one"


class ALPKDLoss(AuxKDLoss):
    name = "alpkd"

    mode = "all"


class FitNetLoss(Loss):
    """CE + hint_weight * MSE between regressor(student feature) and the teacher feature at one tap."""
    name = "fitnet"
    needs_teacher = True
    uses_features = True

    def __init__(self, student_channels: int, teacher_channels: int, hint_tap: int, T: float = 4.0,
                 hint_weight: float = 100.0):
        super().__init__(T)
        self.hint_tap = int(hint_tap)
        self.hint_weight = float(hint_weight)
        self.regressor = nn.Conv2d(student_channels, teacher_channels, 1, bias=False)

    def forward(self, s: ModelOutput, t: ModelOutput, y):
        t = self._teacher(t)
        ce = F.cross_entropy(s.logits, y)
        fs, ft = s.features[self.hint_tap], t.features[self.hint_tap]
        r = self.regressor(fs)
        if r.shape[2:] != ft.shape[2:]:
            r = F.adaptive_avg_pool2d(r, ft.shape[2:])
        hint = F.mse_loss(r, ft)
        return ce + self.hint_weight * hint, {"ce": ce.item(), "hint": hint.item()}


LOSSES = {cls.name: cls for cls in (CELoss, CEAuxLoss, KDLoss, PoKDLoss, MHKDLoss, ALPKDLoss, FitNetLoss)}


def _feature_channels(model, in_shape) -> list[int]:
    p = next(model.parameters())
    was = model.training
    model.eval()
    with torch.no_grad():
        out = model.forward_all(torch.zeros((1, *in_shape), dtype=p.dtype, device=p.device))
    model.train(was)
    return [f.shape[1] for f in out.features]


def make_loss(name: str, student=None, teacher=None, in_shape=None, T: float = 4.0, **kwargs) -> Loss:
    """The loss called ``name`` (see module doc). FitNet needs ``student``, ``teacher`` and ``in_shape`` to size
    its regressor; ``hint_tap`` / ``hint_weight`` go in ``kwargs``."""
    if name not in LOSSES:
        raise Esc2cError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
    if name == "fitnet":
        if student is None or teacher is None or in_shape is None:
            raise Esc2cError("loss 'fitnet' needs the student, the teacher and the input shape")
        cs, ct = _feature_channels(student, in_shape), _feature_channels(teacher, in_shape)
        if not cs or len(cs) != len(ct):
            raise Esc2cError(f"loss 'fitnet' needs matching feature taps (student {len(cs)}, teacher {len(ct)})")
        tap = kwargs.pop("hint_tap", len(cs) // 2)
        if not 0 <= tap < len(cs):
            raise Esc2cError(f"fitnet hint_tap {tap} out of range (0..{len(cs) - 1})")
        loss = FitNetLoss(cs[tap], ct[tap], tap, T=T, **kwargs)
        p = next(student.parameters())
        return loss.to(p.device)
    allowed = set(getattr(LOSSES[name], "OPTIONS", ()))
    if set(kwargs) - allowed:
        raise Esc2cError(f"loss {name!r} takes no options {sorted(set(kwargs) - allowed)}"
                         + (f" (it takes {sorted(allowed)})" if allowed else ""))
    return LOSSES[name](T=T, **kwargs)
