"""``esc2c compress`` end to end: the paper's steps 1-6 as resumable stages, then export and report.

The stages are declared as data in :mod:`esc2c.compress.framework` (student, teacher, loss, epochs, what
each saves); a small driver here builds, trains and scores each row through the
:class:`~esc2c.compress.stages.StageRunner` (each a directory of the run, see :mod:`esc2c.compress.stages`):

  teacher   M_Ori: the full model with aux heads, trained with eq. 4 (CE on logits and every aux head)
  prune     CUP to ``prune_ratio`` of the deployed parameters, plus an accuracy-vs-ratio sweep scored before
            any fine-tuning (BatchNorm statistics re-estimated on training batches, weights untouched)
  finetune  M_Pru: the pruned model fine-tuned with eq. 4 (no distillation)
  pokd      M_PoKD: the pruned model trained by PoKD from M_Ori
  qat_ta    M_OriQ: INT8 QAT of M_Ori trained by PoKD from M_Ori (teacher assistant), at ``qat_ta_lr``
            (BN is folded there, so the steps that suit the float teacher wreck it)
  qakd      M_QaKD: INT8 QAT of M_PoKD trained by PoKD from M_OriQ  -> exported
  qat_ce    baseline M_Qua: INT8 QAT of M_PoKD with cross-entropy only        (``baselines``)
  directkd  baseline DirectKD: INT8 QAT of M_PoKD trained by PoKD from M_Ori  (``baselines``)
  kd, fitnet, mhkd, alpkd  Table 1 KD baselines: the pruned model trained from M_Ori with that loss for PoKD's
            epochs (``kd_baselines``, none by default)

Then ``model.onnx`` (QDQ, batch 1, aux heads removed) is written from M_QaKD and checked: onnxruntime and the
exact integer program are scored on the validation folds. ``report.json`` and ``report.md`` (with plots)
sum it up. Accuracy is measured on ``val_folds``. Each training stage keeps its best epoch: scored on
``val_folds`` too by default (the paper's protocol), or, with ``holdout`` > 0, on that fraction of the
training folds held out by whole recordings (:func:`esc2c.data.holdout.holdout_split`), so that the
accuracy reported on ``val_folds`` is a clean test score.
"""
from __future__ import annotations

import copy
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from esc2c.compress import budget, cup, distributed, qakd, stage_qdebug
from esc2c.compress import report as report_mod
from esc2c.compress.config import CompressConfig
from esc2c.compress.framework import FRAMEWORK, PRUNE_OPTIONAL, QAT, StageSpec, stage_specs
from esc2c.compress.stages import Stage, StageResult, StageRunner
from esc2c.compress.train import TrainConfig, evaluate, resolve_device, train
from esc2c.data import load_features
from esc2c.data.holdout import holdout_split
from esc2c.errors import Esc2cError
from esc2c.fsutil import discard_if_unused, open_run_dir
from esc2c.models.counting import count_params
from esc2c.models.registry import build_from_config, build_model, model_config
from esc2c.quant import export, qat, reference

# ("teacher", "prune", "finetune", "pokd", "qat_ta", "qakd", "qat_ce", "directkd")
STAGES = tuple(s.name for s in FRAMEWORK)


def load_data(cfg: CompressConfig, log: Callable[[str], None] = print):
    """(train, select, val, spec): log-mel of the configured folds, normalised with the training folds'
    statistics. ``select`` (where each stage picks its best epoch) is ``val`` when ``cfg.holdout`` is 0,
    else the recordings held out of the training folds (then no longer in ``train``)."""
    spec = cfg.feature_spec()
    kw = dict(cache_dir=cfg.cache_dir, seed=cfg.seed, per_class=cfg.synthetic_per_class)
    log(f"features: {cfg.dataset} folds train {cfg.train_folds} val {cfg.val_folds}, "
        f"{spec.n_mels} mels x {spec.frames} frames ({spec.clip_seconds:g} s clips at {spec.sample_rate} Hz, "
        f"n_fft {spec.n_fft}, window {spec.win_length}, hop {spec.hop_length})")
    tr = load_features(cfg.dataset, cfg.data_dir, cfg.train_folds, spec, **kw)
    va = load_features(cfg.dataset, cfg.data_dir, cfg.val_folds, spec, **kw)
    mean, std = tr.stats()
    spec = spec.with_stats(mean, std)
    tr, va = tr.normalised(spec), va.normalised(spec)
    if not cfg.holdout:
        return tr, va, va, spec
    tr, sel = holdout_split(tr, cfg.dataset, cfg.holdout, cfg.seed)
    use = "pick the best epochs" if cfg.epoch_selection == "best" else "are scored each epoch (the last is kept)"
    log(f"holdout: {len(sel.y)} clips of the training folds (whole recordings) {use}")
    return tr, sel, va, spec


def _qat_save(q: qat.QATNet) -> dict:
    return {"model_config": q.float_config, "qat_state": qakd.qat_state(q)}


def _qat_load(ck: dict, ctx) -> qat.QATNet:
    q = qakd.load_qat_state(build_from_config(ck["model_config"]), ck["qat_state"])
    q.float_config = ck["model_config"]
    return q


def _with_float_config(q: qat.QATNet, float_model) -> qat.QATNet:
    q.float_config = model_config(float_model)
    return q


@torch.no_grad()
def recalibrated_bn(model, data, batch_size: int = 64, max_batches: int = 16, seed: int = 0):
    """A copy of ``model`` whose BatchNorm statistics are re-estimated on training batches (no weight
    update): how a pruned model is scored before fine-tuning (pruning invalidates the old statistics)."""
    m = copy.deepcopy(model).cpu().train()
    bns = [b for b in m.modules() if isinstance(b, torch.nn.BatchNorm2d)]
    for b in bns:
        b.reset_running_stats()
        b.momentum = None  # cumulative average over the batches seen
    for xb in qakd.calibration_batches(data, batch_size, max_batches, seed):
        m(xb)
    return m.eval()


def int8_bytes(program: dict) -> int:
    """Bytes of the deployed constants: int8 weights, int32 biases (scales/multipliers not counted)."""
    return int(sum(L["weight"].size + 4 * L["bias"].size for L in program["layers"] if "weight" in L))


def integer_accuracy(q: qat.QATNet, data, rounding: str, batch: int = 256) -> float:
    """Accuracy of the exact integer program (argmax of int8 logits) on ``data``."""
    prog = q.integer_program()
    correct = 0
    for i in range(0, len(data.y), batch):
        xi = qat.quantize_input(q, torch.from_numpy(data.x[i:i + batch]))
        logits = reference.run(prog, xi, rounding)[prog["output"]]
        correct += int(np.sum(logits.argmax(1) == data.y[i:i + batch]))
    return correct / len(data.y)


def onnx_accuracy(model_proto, data) -> float:
    sess = export.ort_session(model_proto)
    preds = [int(sess.run(None, {"input": data.x[i:i + 1]})[0].argmax()) for i in range(len(data.y))]
    return float(np.mean(np.array(preds) == data.y))


class _Driver:
    """Turns the rows of :data:`esc2c.compress.framework.FRAMEWORK` into runnable stages: builds each student,
    trains it with its loss and teacher, and scores it. ``results`` are the runner's finished stages."""

    def __init__(self, cfg: CompressConfig, results: dict[str, StageResult], tr, sel, va, in_shape, n_cls, dev,
                 progress: bool, augment, log: Callable[[str], None], settings: dict[str, dict]):
        self.cfg, self.R, self.tr, self.sel, self.va = cfg, results, tr, sel, va
        self.base_settings = settings  # the run's settings every float / quantized stage records
        self.in_shape, self.n_cls, self.dev, self.progress, self.augment, self.log = \
            in_shape, n_cls, dev, progress, augment, log
        # the pruned FP32 students (M_Pru, M_PoKD, the KD baselines) train at student_lr_factor x lr: a 97 %-pruned
        # model starts from surviving filters, not from scratch, and with a few thousand parameters it needs
        # larger steps (synthetic default pruned 97 %, augmented recipe, 30 epochs: 41 % at lr 1e-3, 74 % at 3e-3)
        self.lrs = {"lr": cfg.lr, "student": cfg.lr * cfg.student_lr_factor, "qat_ta": cfg.qat_ta_lr}

    def tcfg(self, epochs: int, lr: float | None = None) -> TrainConfig:
        c = self.cfg
        return TrainConfig(epochs=epochs, batch_size=c.batch_size, lr=lr or c.lr, weight_decay=c.weight_decay,
                           T=c.temperature, seed=c.seed, device=str(self.dev), progress=self.progress,
                           augment=self.augment, schedule=c.lr_schedule, warmup_epochs=c.warmup_epochs,
                           select=c.epoch_selection, ema_decay=c.ema_decay)

    def acc(self, model) -> float:
        return evaluate(model.to(self.dev), self.va, self.dev)["acc"]

    def metrics(self, model, res) -> dict:
        return {"val_acc": self.acc(model), "params": count_params(model), "best_epoch": res.best_epoch,
                "select_acc": res.best_val_acc, "history": res.history}

    def settings(self, st: StageSpec) -> dict:
        """What the stage records and a resumed run must match: the run's common settings, its epochs and
        the extra fields its row names."""
        out = dict(self.base_settings["quantized" if st.student == "quantize" else "float"])
        if st.epochs:
            out["epochs"] = getattr(self.cfg, st.epochs)
        out.update({key: getattr(self.cfg, field) for key, field in st.records})
        if st.student == "prune":
            out.update({k: getattr(self.cfg, k) for k in PRUNE_OPTIONAL if getattr(self.cfg, k)})
        return out

    def stage(self, st: StageSpec) -> Stage:
        qat_io = {"save": _qat_save, "load": _qat_load} if st.saves == QAT else {}
        return Stage(st.name, lambda ctx: self.run(st, ctx), self.settings(st),
                     parallel=st.student != "prune", **qat_io)

    def run(self, st: StageSpec, ctx) -> StageResult:
        if st.student == "prune":
            return self.prune(self.R[st.source].model)
        tc = self.tcfg(getattr(self.cfg, st.epochs), self.lrs[st.lr])
        teacher = self.R[st.teacher].model if st.teacher else None
        if st.student == "quantize":
            return self.train_quantized(st, teacher, tc, ctx)
        if st.student == "build":
            m = build_model(self.cfg.arch, self.n_cls, self.cfg.width, self.in_shape, aux=True,
                            dropout=self.cfg.dropout)
        elif st.student == "copy":
            src = self.R[st.source].model
            m = build_from_config(model_config(src))
            m.load_state_dict(src.state_dict())
        else:
            raise Esc2cError(f"stage {st.name}: unknown student {st.student!r}")
        res = train(m, self.tr, self.sel, st.loss, teacher=teacher, cfg=tc, checkpoint=ctx.train_checkpoint,
                    checkpoint_extra=ctx.checkpoint_extra())
        return StageResult(res.model, self.metrics(res.model, res))

    def train_quantized(self, st: StageSpec, teacher, tc: TrainConfig, ctx) -> StageResult:
        float_model = self.R[st.source].model
        # qakd's trainers take the teacher after the student's float model, except the teacher assistant,
        # whose teacher is that float model itself
        teachers = [teacher] if teacher is not None and st.teacher != st.source else []
        res = getattr(qakd, st.trainer)(float_model, *teachers, self.tr, self.sel, tc, self.cfg.calib_batches,
                                        ctx.train_checkpoint)
        q = _with_float_config(res.model, float_model)
        prog = q.integer_program()
        return StageResult(q, {"val_acc": self.acc(q), "params": count_params(float_model),
                               "int8_params": int(sum(L["weight"].size + L["bias"].size
                                                      for L in prog["layers"] if "weight" in L)),
                               "int8_bytes": int8_bytes(prog),
                               "best_epoch": res.best_epoch, "select_acc": res.best_val_acc,
                               "history": res.history,
                               "int_val_acc": integer_accuracy(q, self.va, self.cfg.rounding)})

    def prune(self, m_ori) -> StageResult:
        cfg, log, acc, tr = self.cfg, self.log, self.acc, self.tr
        m_ori = m_ori.to("cpu")
        widths = budget.widths_for(cfg.board, cfg.channel_multiple, cfg.min_channels)
        cl = cup.cluster(m_ori)
        if cfg.target_params:
            pr = cup.prune_to_params(m_ori, cfg.target_params, widths, clustering=cl)
        else:
            pr = cup.prune_to_ratio(m_ori, cfg.prune_ratio, widths=widths, clustering=cl)
        log(f"[prune] {pr.params_after} parameters kept for a target of {pr.target} (widths: multiple "
            f"{widths.multiple}, at least {widths.min_channels})")
        cost = None
        if cfg.board:
            b = budget.board_budget(cfg.board, cfg.max_flash or None, cfg.max_ram or None,
                                    cfg.max_latency_ms or None)
            pr, cost = budget.prune_to_budget(m_ori, self.in_shape, b, widths, start=pr, clustering=cl)
            log(f"[prune] budget {b.describe()}: flash {cost.flash} B, RAM {cost.ram} B, latency "
                f"{cost.latency_ms:.2f} ms (cost-model estimate) with {pr.params_after} parameters")
        sweep = []
        for r in cfg.ratio_sweep:
            try:
                p = cup.prune_to_ratio(m_ori, r, widths=widths, clustering=cl)
                sweep.append({"target": float(r), "ratio": p.ratio, "params_after": p.params_after,
                              "accuracy": acc(recalibrated_bn(p.model, tr, seed=cfg.seed))})
            except Esc2cError as e:
                log(f"[prune] sweep ratio {r}: {e}")
        asked = pr.ratio if cfg.target_params or cfg.board else cfg.prune_ratio
        sweep.append({"target": asked, "ratio": pr.ratio, "params_after": pr.params_after,
                      "accuracy": acc(recalibrated_bn(pr.model, tr, seed=cfg.seed))})
        summary = pr.summary()
        log(f"[prune] removed {pr.ratio:.4f} of {pr.params_before} parameters (t = {pr.threshold:.4g})")
        extra = {"target_params": pr.target, "channel_multiple": widths.multiple, "min_channels": widths.min_channels}
        if cost is not None:
            extra["deployed_cost"] = cost.summary()
        return StageResult(pr.model, {"val_acc": sweep[-1]["accuracy"], "params": pr.params_after,
                                      "ratio": pr.ratio, "threshold": pr.threshold, "widths": summary["widths"],
                                      "params_before": pr.params_before, "sweep": sweep, **extra})


def run(cfg: CompressConfig, out_dir: str | os.PathLike, log: Callable[[str], None] = print,
        progress: bool = True, force: bool = False) -> dict:
    """Run (or resume) every stage into ``out_dir``; write model.onnx, report.json, report.md. Returns the
    report dict (on every rank of a torchrun launch; only rank 0 logs and writes). ``out_dir`` must be new,
    empty or an earlier compress run (``force``: also another esc2c command's output, never other files); a
    failed run leaves no empty directories behind."""
    env = distributed.setup(cfg.device)
    try:
        if not env.is_main:
            log, progress = (lambda s: None), False
        # rank 0 claims (or creates) the directory; an error there is raised on every rank
        out, created = distributed.on_main(
            lambda: open_run_dir(out_dir, "compress", force, looks_like=looks_like_run))
        try:
            return _run(cfg, Path(out), log, progress, env)
        except BaseException:
            if env.is_main:
                discard_if_unused(out, created)
            raise
    finally:
        distributed.shutdown(env)


def looks_like_run(path: Path) -> bool:
    """A compress run directory from before output markers: stages/ and nothing but compress outputs."""
    known = {"stages", "model.onnx", "report.json", "report.md"}
    return (path / "stages").is_dir() and all(p.name in known or p.suffix == ".png" or p.name.startswith(".")
                                              for p in path.iterdir())


def _run(cfg: CompressConfig, out: Path, log: Callable[[str], None], progress: bool,
         env: distributed.DistEnv) -> dict:
    t0 = time.time()
    dev = env.device if env.world > 1 else resolve_device(cfg.device)
    torch.set_num_threads(max(1, int(cfg.threads)))
    torch.manual_seed(cfg.seed)
    if env.world > 1:
        log(f"data parallel: {env.world} processes ({env.backend}), global batch {cfg.batch_size}")
    with distributed.main_first():               # rank 0 fills the feature cache, the others read it
        tr, sel, va, spec = load_data(cfg, log)
    n_cls = len(tr.class_names)
    in_shape = tuple(tr.x.shape[1:])
    log(f"data: {len(tr.y)} training clips, {len(va.y)} validation clips, {n_cls} classes, input {in_shape}")

    augment = cfg.augment(spec)
    log(f"recipe: {cfg.preset}; augmentation {augment.to_dict()}; lr schedule {cfg.lr_schedule} "
        f"(warm-up {cfg.warmup_epochs:g} epochs); each stage keeps its {cfg.epoch_selection} epoch"
        + (f" of its weights' moving average (decay {cfg.ema_decay:g})" if cfg.ema_decay else ""))

    common = {"arch": cfg.arch, "width": cfg.width, "seed": cfg.seed, "batch_size": cfg.batch_size,
              "lr": cfg.lr, "weight_decay": cfg.weight_decay, "temperature": cfg.temperature,
              "dataset": cfg.dataset, "train_folds": cfg.train_folds, "val_folds": cfg.val_folds,
              "synthetic_per_class": cfg.synthetic_per_class}
    if cfg.holdout:                              # (absent when 0, so runs from before the option still resume)
        common["holdout"] = cfg.holdout
    if augment.active or augment.soft_targets or cfg.lr_schedule != "constant":    # (absent for the plain recipe,
        common["recipe"] = {**augment.to_dict(), "lr_schedule": cfg.lr_schedule,   # likewise)
                            "warmup_epochs": cfg.warmup_epochs}
    if cfg.epoch_selection != "best":            # (absent for "best", so earlier runs still resume)
        common["epoch_selection"] = cfg.epoch_selection
    if cfg.ema_decay:                            # (absent when off, likewise)
        common["ema_decay"] = cfg.ema_decay
    if cfg.dropout:                              # (likewise)
        common["dropout"] = cfg.dropout
    qcommon = {**common, "calib_batches": cfg.calib_batches}
    if cfg.student_lr_factor != 1.0:             # (absent at 1, so runs from before the option still resume)
        common["student_lr_factor"] = cfg.student_lr_factor
    runner = StageRunner(out / "stages", config=cfg.to_dict(), spec=spec.to_dict(), device=str(dev), log=log)
    R = runner.results
    driver = _Driver(cfg, R, tr, sel, va, in_shape, n_cls, dev, progress, augment, log,
                     settings={"float": common, "quantized": qcommon})
    for st in stage_specs(cfg):
        t = time.time()
        runner.run_stage(driver.stage(st))
        log(f"[{st.name}] val acc {R[st.name].metrics.get('val_acc', float('nan')):.4f} ({time.time() - t:.1f} s)")
    tcfg, acc = driver.tcfg, driver.acc

    if not env.is_main:                          # calibration, export and the report run on rank 0
        return distributed.broadcast_object()
    # post-training quantization of M_PoKD (calibration only): the accuracy INT8 costs before any QAT
    ptq = qakd.quantize_calibrated(R["pokd"].model, tr, tcfg(0), cfg.calib_batches).eval()
    ptq_acc = acc(ptq)

    # export M_QaKD without its aux heads
    final = R["qakd"].model.to("cpu").eval()
    final.drop_aux_heads()
    program = final.integer_program(in_shape)
    onnx_path = out / "model.onnx"
    proto = export.export_onnx(final, onnx_path, in_shape, feature_spec=spec, class_names=tr.class_names,
                               rounding=cfg.rounding)
    log(f"wrote {onnx_path}")
    deployed = {"onnx_val_acc": onnx_accuracy(proto, va), "int_val_acc": integer_accuracy(final, va, cfg.rounding),
                "fake_quant_val_acc": acc(final), "int8_bytes": int8_bytes(program),
                "params": count_params(R["pokd"].model), "rounding": cfg.rounding}
    rep = report_mod.build_report(cfg, {k: R[k].metrics for k in R}, ptq_acc, deployed, spec,
                                  tr.class_names, len(tr.y), len(va.y), time.time() - t0)
    rep["quant_debug"] = stage_qdebug.for_report(final, R["pokd"].model, va, cfg.rounding, seed=cfg.seed)
    report_mod.write_report(rep, out)
    log(f"wrote {out / 'report.json'} and {out / 'report.md'}")
    return distributed.broadcast_object(rep)
