"""Quantization-aware knowledge distillation (QaKD, the paper's step 6) and its baselines.

    M_OriQ = quantize(M_Ori), trained by PoKD from M_Ori            (teacher assistant, default 5 epochs)
    M_QaKD = quantize(M_PoKD), trained by PoKD from M_OriQ          (default 50 epochs)
  baselines:
    M_Qua    = quantize(M_PoKD), calibrated only (post-training quantization, no training)
    QAT-CE   = quantize(M_PoKD), QAT with the plain cross-entropy (no distillation)
    DirectKD = quantize(M_PoKD), trained by PoKD straight from M_Ori (no quantized teacher assistant)

"quantize" is :func:`esc2c.quant.qat.quantize_model` (BN folded, int8 fake quantization of weights and
activations that simulates the integer contract) followed by :func:`calibrate` on training batches. The
auxiliary heads stay float and train with the trunk; they are dropped at export. Every function takes the
shared :class:`~esc2c.compress.train.TrainConfig` and an optional checkpoint path (resumable epochs).
"""
from __future__ import annotations

import os

import numpy as np
import torch

from esc2c.compress.train import TrainConfig, TrainResult, resolve_device, train
from esc2c.models.blocks import ESCNet
from esc2c.quant.qat import QATNet, calibrate, load_qat, quantize_model


def calibration_batches(train_data, batch_size: int, n_batches: int, seed: int):
    """``n_batches`` batches of training inputs drawn without replacement by a seeded permutation."""
    x = train_data.x if hasattr(train_data, "x") else train_data[0]
    x = torch.from_numpy(np.ascontiguousarray(x)).float() if isinstance(x, np.ndarray) else x.float()
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    take = order[:batch_size * n_batches]
    return [x[take[i:i + batch_size]] for i in range(0, len(take), batch_size)]


def quantize_calibrated(model: ESCNet, train_data, cfg: TrainConfig, calib_batches: int = 8) -> QATNet:
    """A calibrated QAT copy of ``model`` (the float model is not changed)."""
    q = quantize_model(model)
    dev = resolve_device(cfg.device)
    q.to(dev)
    calibrate(q, [b.to(dev) for b in calibration_batches(train_data, cfg.batch_size, calib_batches, cfg.seed)])
    return q


def _train_qat(float_model: ESCNet, train_data, val_data, loss: str, teacher, cfg: TrainConfig,
               calib_batches: int, checkpoint) -> TrainResult:
    q = quantize_calibrated(float_model, train_data, cfg, calib_batches)
    return train(q, train_data, val_data, loss=loss, teacher=teacher, cfg=cfg, checkpoint=checkpoint)


def teacher_assistant(m_ori: ESCNet, train_data, val_data, cfg: TrainConfig, calib_batches: int = 8,
                      checkpoint: str | os.PathLike | None = None) -> TrainResult:
    """M_OriQ: the quantized teacher trained by PoKD from the float teacher M_Ori."""
    return _train_qat(m_ori, train_data, val_data, "pokd", m_ori, cfg, calib_batches, checkpoint)


def qakd(m_pokd: ESCNet, m_oriq: QATNet, train_data, val_data, cfg: TrainConfig, calib_batches: int = 8,
         checkpoint: str | os.PathLike | None = None) -> TrainResult:
    """M_QaKD: the quantized pruned student trained by PoKD from the quantized teacher assistant M_OriQ."""
    return _train_qat(m_pokd, train_data, val_data, "pokd", m_oriq, cfg, calib_batches, checkpoint)


def direct_kd(m_pokd: ESCNet, m_ori: ESCNet, train_data, val_data, cfg: TrainConfig, calib_batches: int = 8,
              checkpoint: str | os.PathLike | None = None) -> TrainResult:
    """DirectKD baseline: the quantized pruned student trained by PoKD straight from the float M_Ori."""
    return _train_qat(m_pokd, train_data, val_data, "pokd", m_ori, cfg, calib_batches, checkpoint)


def qat_ce(m_pokd: ESCNet, train_data, val_data, cfg: TrainConfig, calib_batches: int = 8,
           checkpoint: str | os.PathLike | None = None) -> TrainResult:
    """Baseline without distillation: QAT of the quantized pruned model with cross-entropy only."""
    return _train_qat(m_pokd, train_data, val_data, "ce", None, cfg, calib_batches, checkpoint)


def qat_state(q: QATNet) -> dict:
    """What a checkpoint needs to rebuild ``q`` with :func:`load_qat_state` (on top of the float config)."""
    return {k: v.detach().cpu() for k, v in q.state_dict().items()}


def load_qat_state(float_model: ESCNet, state: dict) -> QATNet:
    return load_qat(float_model, state)
