"""The training loop shared by every stage: teacher training, fine-tuning and distillation.

``train`` optimises a student (any module with ``forward_all(x) -> ModelOutput``, e.g. an ESCNet or a QAT
wrapper) with a loss chosen by name (see :mod:`esc2c.compress.losses`) against an optional teacher that is
frozen in eval mode. Adam (batch 64, lr 1e-3, weight decay 5e-4 by default) over the student's parameters and
any the loss owns (FitNet's regressor), with a learning-rate schedule stepped per batch
(:mod:`esc2c.compress.schedule`). After every epoch the student is scored on the validation set; the state with
the best validation accuracy is what the function leaves in the model and returns (``select="best"``), or the
state after the last epoch (``select="last"``: with a schedule that decays the learning rate to 0, the end of
training is stable, and a small validation set picks an epoch by its noise).

Augmentation (:mod:`esc2c.compress.augment`: time shift, SpecAugment masks, mixup, label smoothing) is applied
to each training batch when ``cfg.augment`` asks for it; the teacher then runs on that same augmented batch.
Without input augmentation the teacher's outputs are computed once for the whole training set and reused every
epoch (the teacher is deterministic in eval mode). The defaults of :class:`TrainConfig` are the plain loop: no
augmentation, constant rate; ``esc2c compress`` passes its recipe.

Resuming: with ``checkpoint=path`` every epoch ends by writing (atomically) the student, loss and optimizer
state, the best state so far and the history; a later call with the same path continues at the next epoch.
Each epoch reseeds torch from ``seed + epoch`` and shuffles with its own generator, so an interrupted and
resumed run on CPU gives the same weights as an uninterrupted one.

Data parallel (inside a process group of N ranks, see :mod:`esc2c.compress.distributed`): ``batch_size`` is
the global batch. Every rank draws the same epoch order and augments the same global batch from the shared
generator, then takes its contiguous share of the rows (sizes differ by at most one when N does not divide
the batch; a rank may hold none of a short last batch). Each rank runs the frozen teacher on its own rows; the
student (with the loss's own parameters) is wrapped in DistributedDataParallel, and each rank's mean loss is
weighted by its share (``rows * N / batch``) so the averaged gradient is that of the global batch's mean loss.
BatchNorm layers of the student become :class:`~esc2c.compress.distributed.SyncBatchNorm2d` (global batch
statistics) and QAT activation observers take the global batch's range, so the run follows the one-process
run with the same global batch up to float summation order. Epoch metrics and the validation counts are
summed over ranks, so every rank picks the same best epoch; only rank 0 writes the checkpoint, and a resumed
run reads it on rank 0 and broadcasts it (the checkpoint holds nothing that depends on N, so a run may resume
with a different number of processes).
"""
from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from torch.nn.parallel import DistributedDataParallel

from esc2c.compress import distributed
from esc2c.compress.averaging import weight_average
from esc2c.compress.augment import AugmentConfig, augment_batch, targets
from esc2c.compress.losses import Loss, make_loss
from esc2c.compress.schedule import SELECT, make_scheduler
from esc2c.errors import Esc2cError
from esc2c.models.blocks import ESCNet, ModelOutput
from esc2c.models.registry import model_config


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 5e-4
    T: float = 4.0                 # distillation temperature (losses built by name)
    seed: int = 0
    device: str = "cpu"
    progress: bool = True          # per-batch progress bars (tqdm)
    verbose: bool = True           # one summary line per epoch
    cache_teacher: bool = True     # run the frozen teacher once over the training set, not once per epoch
                                   # (only without input augmentation)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    schedule: str = "constant"     # learning-rate schedule (esc2c.compress.schedule.SCHEDULES)
    warmup_epochs: float = 0.0     # linear warm-up length of the "cosine" schedule
    select: str = "best"           # the state returned: "best" validation accuracy, or the "last" epoch's
    ema_decay: float = 0.0         # > 0: evaluate, select and return an exponential moving average of the
                                   # weights (esc2c.compress.averaging), updated after every step


@dataclass
class TrainResult:
    model: nn.Module
    best_val_acc: float
    best_epoch: int
    history: list[dict] = field(default_factory=list)

    @property
    def metrics(self) -> dict:
        return {"best_val_acc": self.best_val_acc, "best_epoch": self.best_epoch, "epochs": len(self.history),
                "history": self.history}


def resolve_device(device: str) -> torch.device:
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise Esc2cError(f"unknown device {device!r}; use 'cpu' or 'cuda'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise Esc2cError("device 'cuda' requested but torch sees no CUDA GPU (use --device cpu)")
    if dev.type not in ("cpu", "cuda"):
        raise Esc2cError(f"unsupported device {device!r}; use 'cpu' or 'cuda'")
    return dev


def _tensors(data) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) of a FeatureSet-like object (``.x``, ``.y`` as numpy arrays or tensors) or an (x, y) pair."""
    x, y = (data.x, data.y) if hasattr(data, "x") else data
    x = torch.from_numpy(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else x
    y = torch.from_numpy(np.ascontiguousarray(y)) if isinstance(y, np.ndarray) else y
    if x.dim() != 4 or len(x) != len(y) or len(x) == 0:
        raise Esc2cError(f"training data must be x [N, 1, n_mels, frames] with N labels (got x {tuple(x.shape)}, "
                         f"y {tuple(y.shape)})")
    return x.float(), y.long()


@torch.no_grad()
def _eval_sums(model: nn.Module, x: torch.Tensor, y: torch.Tensor, dev: torch.device,
               batch_size: int) -> tuple[int, float]:
    was = model.training
    model.eval()
    correct, loss_sum = 0, 0.0
    for i in range(0, len(x), batch_size):
        xb, yb = x[i:i + batch_size].to(dev), y[i:i + batch_size].to(dev)
        logits = model(xb)
        correct += int((logits.argmax(1) == yb).sum())
        loss_sum += float(nn.functional.cross_entropy(logits, yb, reduction="sum"))
    model.train(was)
    return correct, loss_sum


def evaluate(model: nn.Module, data, device: str | torch.device = "cpu", batch_size: int = 256) -> dict:
    """Accuracy and mean CE loss of ``model`` (eval mode) on ``data``."""
    dev = resolve_device(str(device))
    x, y = _tensors(data)
    correct, loss_sum = _eval_sums(model, x, y, dev, batch_size)
    return {"acc": correct / len(x), "loss": loss_sum / len(x)}


def evaluate_sharded(model: nn.Module, data, device: str | torch.device = "cpu", batch_size: int = 256) -> dict:
    """:func:`evaluate` with the rows split over the ranks and the counts summed (every rank gets the same
    figures). Without a process group it is :func:`evaluate`."""
    if not distributed.active():
        return evaluate(model, data, device, batch_size)
    dev = resolve_device(str(device))
    x, y = _tensors(data)
    lo, hi = distributed.share(len(x), distributed.world_size(), distributed.rank())
    correct, loss_sum = _eval_sums(model, x[lo:hi], y[lo:hi], dev, batch_size)
    correct, loss_sum = distributed.all_reduce_sum([correct, loss_sum], dev)
    return {"acc": int(round(correct)) / len(x), "loss": loss_sum / len(x)}


def _state_cpu(module: nn.Module) -> dict:
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


def _optimizer_to(opt: torch.optim.Optimizer, dev: torch.device) -> None:
    for st in opt.state.values():
        for k, v in st.items():
            if torch.is_tensor(v) and k != "step":
                st[k] = v.to(dev)


def save_atomic(obj, path: str | os.PathLike) -> None:
    """torch.save to a temporary sibling, then rename: a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@torch.no_grad()
def teacher_outputs(teacher: nn.Module, x: torch.Tensor, dev: torch.device, features: bool,
                    batch_size: int = 256) -> ModelOutput:
    """The frozen teacher's outputs for every row of ``x``, kept on the CPU (features only if asked)."""
    logits, aux, feats = [], [], []
    for i in range(0, len(x), batch_size):
        o = _teach(teacher, x[i:i + batch_size].to(dev), torch.arange(i, min(i + batch_size, len(x))))
        logits.append(o.logits.cpu())
        aux.append([a.cpu() for a in o.aux_logits])
        if features:
            feats.append([f.cpu() for f in o.features])
    cat = lambda rows: [torch.cat(col) for col in zip(*rows)] if rows and rows[0] else []   # noqa: E731
    return ModelOutput(torch.cat(logits), cat(aux), cat(feats))


def _teach(teacher: nn.Module, xb: torch.Tensor, rows: torch.Tensor) -> ModelOutput:
    """The teacher's outputs for a batch; a per-row teacher (esc2c.compress.crossfit) also gets the batch's
    rows of the training set."""
    return teacher.forward_all(xb, rows=rows) if getattr(teacher, "per_row", False) else teacher.forward_all(xb)


def _rows(out: ModelOutput, idx: torch.Tensor, dev: torch.device) -> ModelOutput:
    return ModelOutput(out.logits[idx].to(dev), [a[idx].to(dev) for a in out.aux_logits],
                       [f[idx].to(dev) for f in out.features])


class _Step(nn.Module):
    """Student forward + loss as one module, so DistributedDataParallel sees both parameter sets (a loss may
    own parameters, e.g. FitNet's regressor). A rank holding no rows of the batch returns a zero loss over the
    student outputs the loss reads: its backward pass then reaches the same synchronised BatchNorm layers in
    the same order as the other ranks'."""

    def __init__(self, student: nn.Module, loss_fn: Loss):
        super().__init__()
        self.student, self.loss_fn = student, loss_fn

    def forward(self, xb: torch.Tensor, t_out: ModelOutput | None, target: torch.Tensor):
        s_out = self.student.forward_all(xb)
        if len(xb) == 0:             # the outputs the loss reads, so the backward pass has the other ranks' shape
            used = [s_out.logits, *(s_out.aux_logits if self.loss_fn.uses_aux else [])]
            return sum(t.sum() for t in used) * 0.0, s_out.logits
        value, _parts = self.loss_fn(s_out, t_out, target)
        return value, s_out.logits


def _load_checkpoint(ckpt: Path | None):
    """The checkpoint dict (read on rank 0, broadcast), None when there is none, or an error on every rank."""
    def read():
        if ckpt is None or not ckpt.exists():
            return None
        try:
            return torch.load(ckpt, map_location="cpu", weights_only=False)
        except Exception as e:  # noqa: BLE001 - any unreadable checkpoint is the user's file to remove
            return f"{ckpt}: cannot resume from this checkpoint ({e}); delete it to start over"
    st = distributed.on_main(read)
    if isinstance(st, str):
        raise Esc2cError(st)
    return st


def _num_classes(train_data, y: torch.Tensor) -> int:
    names = getattr(train_data, "class_names", None)
    return len(names) if names else int(y.max()) + 1


def train(student: nn.Module, train_data, val_data=None, loss: str | Loss = "ce_aux",
          teacher: nn.Module | None = None, cfg: TrainConfig | None = None,
          model_prepare: Callable[[nn.Module], nn.Module] | None = None,
          checkpoint: str | os.PathLike | None = None, checkpoint_extra: dict | None = None,
          on_epoch_end: Callable[[int, dict], None] | None = None, loss_options: dict | None = None) -> TrainResult:
    """Train ``student`` on ``train_data`` and keep the best state by accuracy on ``val_data``.

    ``loss`` is a loss name or object; a name is built with ``make_loss(name, student, teacher, in_shape,
    T=cfg.T, **loss_options)``. ``model_prepare(student) -> module`` runs first (e.g. QAT wrapping); the
    returned module is the one trained and returned. ``on_epoch_end(epoch, metrics)`` runs after the epoch's
    checkpoint is written (epochs count from 1). Returns the trained module (best state loaded).
    """
    cfg = cfg or TrainConfig()
    if cfg.select not in SELECT:
        raise Esc2cError(f"epoch selection must be one of {', '.join(SELECT)} (got {cfg.select!r})")
    if cfg.epochs < 0 or cfg.batch_size < 1 or cfg.lr <= 0 or cfg.weight_decay < 0 \
            or not 0.0 <= cfg.ema_decay < 1.0:
        raise Esc2cError(f"bad training settings: epochs {cfg.epochs}, batch {cfg.batch_size}, lr {cfg.lr}, "
                         f"weight decay {cfg.weight_decay}, weight-average decay {cfg.ema_decay}")
    dev = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    x, y = _tensors(train_data)
    if model_prepare is not None:
        student = model_prepare(student)
    student.to(dev)
    if teacher is not None:
        teacher.to(dev).eval()                   # frozen: run in eval mode under no_grad, never optimised
    loss_fn = make_loss(loss, student, teacher, tuple(x.shape[1:]), T=cfg.T, **(loss_options or {})) \
        if isinstance(loss, str) else loss
    loss_fn.to(dev)
    if loss_fn.needs_teacher and teacher is None:
        raise Esc2cError(f"loss {loss_fn.name!r} needs a teacher model")
    params = [p for p in list(student.parameters()) + list(loss_fn.parameters()) if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    n = len(x)
    steps = -(-n // cfg.batch_size)
    sched = make_scheduler(opt, max(1, cfg.epochs * steps), cfg.schedule, int(round(cfg.warmup_epochs * steps)))
    world, rank = distributed.world_size(), distributed.rank()
    main = rank == 0

    # the model each epoch is scored on and kept: the student itself, or the average of its weights
    ema = weight_average(student, cfg.ema_decay) if cfg.ema_decay > 0 else None
    kept = ema.module if ema is not None else student

    start, best_acc, best_epoch, best_state, history = 0, -1.0, 0, None, []
    ckpt = Path(checkpoint) if checkpoint is not None else None
    st = _load_checkpoint(ckpt)
    if st is not None:
        try:
            if (ema is None) != (st.get("ema_state") is None):
                raise ValueError("it was written with a different weight-average setting (ema_decay)")
            student.load_state_dict(st["state_dict"])
            if ema is not None:
                ema.load_state_dict(st["ema_state"])
            loss_fn.load_state_dict(st["loss_state"])
            opt.load_state_dict(st["optimizer"])
            if "scheduler" in st:
                sched.load_state_dict(st["scheduler"])
        except Exception as e:  # noqa: BLE001 - any unreadable checkpoint is the user's file to remove
            raise Esc2cError(f"{ckpt}: cannot resume from this checkpoint ({e}); delete it to start over") from None
        _optimizer_to(opt, dev)
        start, best_acc, best_epoch = st["epoch"], st["best_val_acc"], st["best_epoch"]
        best_state, history = st["best_state"], st["history"]

    extra = dict(checkpoint_extra or {})
    if isinstance(student, ESCNet):
        extra.setdefault("model_config", model_config(student))
    n_cls = _num_classes(train_data, y)
    t_cache = None
    if teacher is not None and loss_fn.needs_teacher and cfg.cache_teacher and not cfg.augment.active \
            and start < cfg.epochs:
        t_cache = teacher_outputs(teacher, x, dev, features=loss_fn.uses_features)
    step = _Step(student, loss_fn)
    synced_bn = []
    if world > 1:
        if cfg.batch_size < world:
            raise Esc2cError(f"batch size {cfg.batch_size} is smaller than the {world} processes: the batch size "
                             "is the global batch, split over the processes")
        synced_bn = distributed.convert_batchnorm(student)
        # a loss that skips the aux heads (or a rank's empty share skipping the loss's own parameters) leaves
        # parameters without gradient: DDP must then look for them every step
        unused = not loss_fn.uses_aux or any(True for _ in loss_fn.parameters())
        step = DistributedDataParallel(step, broadcast_buffers=False, find_unused_parameters=unused)
    try:
        with distributed.synced_observers(student):
            for epoch in range(start, cfg.epochs):
                # dropout and other draws of the global torch RNG differ per rank; the shared generator does not
                torch.manual_seed(cfg.seed * 100003 + epoch + 1000003 * rank)
                gen = torch.Generator().manual_seed(cfg.seed * 100003 + epoch)
                order = torch.randperm(n, generator=gen)
                student.train()
                tot_loss, tot_correct, seen = 0.0, 0, 0
                bar = tqdm(range(0, n, cfg.batch_size), desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False,
                           disable=not (cfg.progress and main), unit="batch")
                for i in bar:
                    idx = order[i:i + cfg.batch_size]
                    xg, mix = augment_batch(x[idx], cfg.augment, gen)       # the global batch, on every rank
                    b = len(idx)
                    lo, hi = distributed.share(b, world, rank)
                    yg = y[idx].to(dev, non_blocking=True)
                    target = targets(yg, n_cls, cfg.augment, mix)[lo:hi]
                    xb, yb = xg[lo:hi].to(dev, non_blocking=True), yg[lo:hi]
                    t_out = None
                    if t_cache is not None:
                        t_out = _rows(t_cache, idx[lo:hi], dev)
                    elif teacher is not None and loss_fn.needs_teacher:
                        with torch.no_grad():
                            t_out = _teach(teacher, xb, idx[lo:hi])
                    value, logits = step(xb, t_out, target)
                    if not torch.isfinite(value):
                        raise Esc2cError(f"training diverged: loss {loss_fn.name!r} is {value.item()} at epoch "
                                         f"{epoch + 1} (lower the learning rate)")
                    opt.zero_grad(set_to_none=True)
                    (value * ((hi - lo) * world / b) if world > 1 else value).backward()
                    opt.step()
                    sched.step()
                    if ema is not None:
                        ema.update_parameters(student)
                    tot_loss += value.item() * (hi - lo)
                    tot_correct += int((logits.detach().argmax(1) == yb).sum())
                    seen += hi - lo
                    if main:
                        bar.set_postfix(loss=f"{tot_loss / max(seen, 1):.3f}", acc=f"{tot_correct / max(seen, 1):.3f}")
                bar.close()
                if world > 1:
                    tot_loss, tot_correct, seen = distributed.all_reduce_sum([tot_loss, tot_correct, seen], dev)
                    tot_correct, seen = int(round(tot_correct)), int(round(seen))
                row = {"epoch": epoch + 1, "train_loss": tot_loss / seen, "train_acc": tot_correct / seen}
                if val_data is not None:
                    v = evaluate_sharded(kept, val_data, dev) if world > 1 else evaluate(kept, val_data, dev)
                    row.update(val_acc=v["acc"], val_loss=v["loss"])
                score = row.get("val_acc", row["train_acc"])
                if score > best_acc:                 # (select "last" keeps no copy of the best state)
                    best_acc, best_epoch = score, epoch + 1
                    best_state = _state_cpu(kept) if cfg.select == "best" else None
                history.append(row)
                if cfg.verbose and main:
                    tqdm.write(f"epoch {epoch + 1}/{cfg.epochs}: loss {row['train_loss']:.4f} "
                               f"acc {row['train_acc']:.4f}"
                               + (f" val_acc {row['val_acc']:.4f}" if "val_acc" in row else ""))
                if ckpt is not None and main:
                    save_atomic({"epoch": epoch + 1, "state_dict": _state_cpu(student),
                                 "loss_state": _state_cpu(loss_fn), "optimizer": opt.state_dict(),
                                 "scheduler": sched.state_dict(), "best_val_acc": best_acc,
                                 "best_epoch": best_epoch, "best_state": best_state, "history": history,
                                 "ema_state": _state_cpu(ema) if ema is not None else None, **extra}, ckpt)
                if on_epoch_end is not None:
                    on_epoch_end(epoch + 1, row)
    finally:
        distributed.revert_batchnorm(synced_bn)
    if cfg.select == "last" and history:         # the final state is the one in the model: report it
        if ema is not None:
            student.load_state_dict(ema.module.state_dict())
        best_epoch = len(history)
        best_acc = history[-1].get("val_acc", history[-1]["train_acc"])
    elif best_state is not None:
        student.load_state_dict(best_state)
    elif val_data is not None:                   # zero epochs: report the model as it is
        best_acc = evaluate(student, val_data, dev)["acc"]
    return TrainResult(student, best_acc, best_epoch, copy.deepcopy(history))
