"""A short data-parallel training job for tests/compress/test_ddp.py: run it under ``torchrun`` (or import it and call
:func:`job` for the one-process reference).

It trains a small float student by PoKD from a frozen teacher, then its INT8 QAT copy, both with the full
augmentation recipe (time shift, SpecAugment, mixup, label smoothing) and the cosine schedule, on 61 clips in
global batches of 12 (the last batch holds one clip, so one of two ranks has none of it), and a student by
cross-entropy alone (its aux heads unused). It records the inputs the student saw in the first epoch (rows
of this rank) and saves, per rank, the final weights, the histories and those inputs to ``OUT/rank<r>.pt``.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

from esc2c.compress import distributed, qakd
from esc2c.compress.augment import AugmentConfig
from esc2c.compress.train import TrainConfig, train
from esc2c.models.registry import build_model

from _bands import IN, Bands

N_TRAIN, BATCH = 61, 12



def job(out_dir=None) -> dict:
    torch.set_num_threads(1)
    tr, va = Bands(N_TRAIN, 0), Bands(30, 1)
    torch.manual_seed(3)
    teacher = build_model("small", 4, width=0.5, in_shape=IN)
    torch.manual_seed(4)
    student = build_model("small", 4, width=0.25, in_shape=IN)
    aug = AugmentConfig(time_shift=0.25, freq_masks=2, freq_mask=0.15, time_masks=2, time_mask=0.1,
                        mixup_alpha=0.2, label_smoothing=0.1)
    cfg = TrainConfig(epochs=2, batch_size=BATCH, seed=5, progress=False, verbose=False, augment=aug,
                      schedule="cosine", warmup_epochs=0.5)
    seen = []

    def record(module, args):
        if len(seen) < -(-N_TRAIN // BATCH):
            seen.append(args[0].detach().clone())
    first_conv = next(m for m in student.modules() if isinstance(m, torch.nn.Conv2d))
    hook = first_conv.register_forward_pre_hook(record)
    ck = Path(out_dir) / "float_last.pt" if out_dir else None
    res = train(student, tr, va, "pokd", teacher=teacher, cfg=cfg, checkpoint=ck)
    hook.remove()
    q = qakd.qakd(res.model, qakd.quantize_calibrated(teacher, tr, cfg, 2), tr, va, cfg, calib_batches=2)
    torch.manual_seed(6)                 # CE only: the aux heads (with BatchNorm) get no gradient; the weights'
    ce = train(build_model("small", 4, width=0.25, in_shape=IN), tr, None, "ce",      # moving average kept
               cfg=TrainConfig(epochs=1, batch_size=BATCH, seed=7, progress=False, verbose=False, augment=aug,
                               select="last", ema_decay=0.5))
    return {"ce": {k: v.clone() for k, v in ce.model.state_dict().items()},"float": {k: v.clone() for k, v in res.model.state_dict().items()}, "float_history": res.history,
            "qat": {k: v.clone() for k, v in q.model.state_dict().items()}, "qat_history": q.history,
            "inputs": seen, "bn_classes": sorted({type(m).__name__ for m in res.model.modules()})}


if __name__ == "__main__":
    out = Path(sys.argv[1])
    env = distributed.setup("cpu")
    try:
        result = job(out)
        torch.save({**result, "world": env.world, "backend": env.backend}, out / f"rank{env.rank}.pt")
    finally:
        distributed.shutdown(env)
