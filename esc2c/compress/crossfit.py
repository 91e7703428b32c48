"""Cross-fitted teachers: soft targets for every training clip from a teacher that never trained on it.

A teacher trained on the training set scores its own training clips almost one-hot (UrbanSound8K, VGG-11
width 0.25, 30 epochs: p(label) 0.996-0.998 at T = 1 on its training clips against 0.48-0.55 on unseen ones),
so distilling on those clips passes on the labels and what the teacher memorised, little of how it
generalises. Split the training recordings into K parts, train one teacher per part on the other K - 1, and
let each clip be taught by the teacher its part was held out from (out-of-fold targets, as in stacking).

:class:`CrossFitTeacher` holds the K teachers and the part of every training row; the training loop passes
the rows of each batch (``forward_all(x, rows=...)``, see :func:`esc2c.compress.train.train`), and each row is
scored by its own out-of-fold teacher only (one teacher forward pass per row in all).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from esc2c.data.holdout import recording_id
from esc2c.errors import Esc2cError
from esc2c.models.blocks import ModelOutput


def recording_parts(files: list[str], dataset: str, k: int, seed: int = 0) -> np.ndarray:
    """Part 0..k-1 of every clip: whole recordings, dealt in a seeded random order to the part with the fewest
    clips so far (so the parts hold about the same number of clips)."""
    if k < 2:
        raise Esc2cError(f"cross-fitting needs at least 2 parts (got {k})")
    rec = np.array([recording_id(dataset, f) for f in files])
    uniq = np.unique(rec)
    if len(uniq) < k:
        raise Esc2cError(f"cross-fitting into {k} parts needs at least {k} recordings (got {len(uniq)})")
    part = np.empty(len(rec), np.int64)
    sizes = np.zeros(k, np.int64)
    for r in np.random.default_rng(seed).permutation(uniq):
        rows = rec == r
        j = int(np.argmin(sizes))
        part[rows] = j
        sizes[j] += int(rows.sum())
    return part


class CrossFitTeacher(nn.Module):
    """K frozen teachers; row i of the training set is scored by ``teachers[part[i]]``, the one trained
    without part ``part[i]``. Used as a teacher by the training loop, which passes each batch's rows."""

    per_row = True   # train() passes ``rows`` to forward_all

    def __init__(self, teachers: list[nn.Module], part: np.ndarray | torch.Tensor):
        super().__init__()
        self.teachers = nn.ModuleList(teachers)
        self.register_buffer("part", torch.as_tensor(np.asarray(part), dtype=torch.long), persistent=False)
        bad = self.part[(self.part < 0) | (self.part >= len(teachers))]
        if len(bad):
            raise Esc2cError(f"cross-fit part {int(bad[0])} has no teacher ({len(teachers)} teachers)")

    def forward_all(self, x: torch.Tensor, rows: torch.Tensor | None = None) -> ModelOutput:
        if rows is None:
            raise Esc2cError("a cross-fitted teacher scores training rows: pass the rows of the batch")
        if len(rows) != len(x):
            raise Esc2cError(f"{len(rows)} rows for a batch of {len(x)}")
        if len(rows) and int(rows.max()) >= len(self.part):
            raise Esc2cError(f"row {int(rows.max())} is past the {len(self.part)} training rows")
        which = self.part[rows.to(self.part.device)].to(x.device)
        out = None
        for j, t in enumerate(self.teachers):
            sel = (which == j).nonzero(as_tuple=True)[0]
            if len(sel) == 0:
                continue
            o = t.forward_all(x[sel])
            if out is None:      # shapes from the first teacher that runs; every row is filled below
                out = ModelOutput(o.logits.new_zeros((len(x),) + o.logits.shape[1:]),
                                  [a.new_zeros((len(x),) + a.shape[1:]) for a in o.aux_logits],
                                  [f.new_zeros((len(x),) + f.shape[1:]) for f in o.features])
            out.logits[sel] = o.logits
            for dst, src in zip(out.aux_logits, o.aux_logits):
                dst[sel] = src
            for dst, src in zip(out.features, o.features):
                dst[sel] = src
        if out is None:
            raise Esc2cError("an empty batch has no teacher outputs")
        return out
