"""The paper's compression framework as data: one row per stage of ``esc2c compress``.

Each row says how the stage's student is built (and from which earlier stage), which stage teaches it, the
loss it trains with (a name of :mod:`esc2c.compress.losses`), the config field that holds its epochs, its
learning rate and what it saves. :mod:`esc2c.compress.pipeline` runs the rows in order through the
:class:`~esc2c.compress.stages.StageRunner` (one directory per stage, resumable).

Students:
  ``build``     a fresh model of the configured architecture, with aux heads
  ``prune``     CUP applied to ``source`` (no training; an accuracy-vs-ratio sweep)
  ``copy``      ``source``'s architecture and weights, trained on
  ``quantize``  INT8 QAT of ``source`` (BN folded, calibrated), trained by ``qakd.<trainer>``
Learning rates: ``lr``; ``student`` (``lr * student_lr_factor``: the pruned FP32 students start from
surviving filters and need larger steps); ``qat_ta`` (``qat_ta_lr``: BN is folded in M_OriQ, the float
teacher's steps wreck it).
"""
from __future__ import annotations

from dataclasses import dataclass

from esc2c.compress.config import CompressConfig

FLOAT, QAT = "float", "qat"   # what a stage saves: an ESCNet checkpoint, or a QAT net's state


@dataclass(frozen=True)
class StageSpec:
    name: str
    student: str                  # build | prune | copy | quantize (see the module docstring)
    source: str | None            # the stage the student is built from
    teacher: str | None           # the stage that teaches it (None: no distillation)
    loss: str | None              # esc2c.compress.losses name (None: no training; quantized: its trainer's)
    epochs: str | None            # CompressConfig field of its epochs
    lr: str = "lr"                # lr | student | qat_ta
    saves: str = FLOAT
    trainer: str | None = None    # quantized students: the esc2c.compress.qakd function that trains them
    records: tuple[tuple[str, str], ...] = ()  # extra (settings key, CompressConfig field) the stage records
    when: str | None = None       # CompressConfig flag the stage runs under (None: always)


_PRUNE_RECORDS = (("epochs_teacher", "epochs_teacher"), ("ratio", "prune_ratio"), ("sweep", "ratio_sweep"))

FRAMEWORK = (
    #          name        student     from       teacher    loss      epochs
    StageSpec("teacher",  "build",    None,      None,      "ce_aux", "epochs_teacher"),         # M_Ori (eq. 4)
    StageSpec("prune",    "prune",    "teacher", None,      None,     None,                      # CUP -> M_Pru
              records=_PRUNE_RECORDS),
    StageSpec("finetune", "copy",     "prune",   None,      "ce_aux", "epochs_prune", lr="student"),   # M_Pru
    StageSpec("pokd",     "copy",     "prune",   "teacher", "pokd",   "epochs_prune", lr="student"),   # M_PoKD
    StageSpec("qat_ta",   "quantize", "teacher", "teacher", "pokd",   "epochs_qat_ta", lr="qat_ta",    # M_OriQ
              saves=QAT, trainer="teacher_assistant", records=(("lr_ta", "qat_ta_lr"),)),
    StageSpec("qakd",     "quantize", "pokd",    "qat_ta",  "pokd",   "epochs_qakd",                   # M_QaKD
              saves=QAT, trainer="qakd", records=(("epochs_ta", "epochs_qat_ta"), ("lr_ta", "qat_ta_lr"))),
    StageSpec("qat_ce",   "quantize", "pokd",    None,      "ce",     "epochs_qakd",                   # M_Qua
              saves=QAT, trainer="qat_ce", when="baselines"),
    StageSpec("directkd", "quantize", "pokd",    "teacher", "pokd",   "epochs_qakd",                   # DirectKD
              saves=QAT, trainer="direct_kd", when="baselines"),
)

# the budget fields of the prune stage, recorded only when set (so runs from before them still resume)
PRUNE_OPTIONAL = ("target_params", "board", "max_flash", "max_ram", "max_latency_ms", "channel_multiple",
                  "min_channels")


def kd_baseline(loss: str) -> StageSpec:
    """A Table 1 KD baseline: M_Pru's starting point (the CUP-pruned M_Ori) trained with ``loss`` from M_Ori
    for PoKD's epochs."""
    return StageSpec(loss, "copy", "prune", "teacher", loss, "epochs_prune", lr="student")


def stage_specs(cfg: CompressConfig) -> list[StageSpec]:
    """The stages ``cfg`` runs, in order: the framework's (baselines when asked), then the KD baselines."""
    return [s for s in FRAMEWORK if s.when is None or getattr(cfg, s.when)] + \
        [kd_baseline(name) for name in cfg.kd_baselines]
