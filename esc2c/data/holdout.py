"""A validation split held out from the training folds by whole source recordings.

Checkpoint selection ("keep the epoch that scores best") must not look at the test folds. The clips of one
source recording are near-duplicates (UrbanSound8K cuts each freesound recording ``fsID`` into slices; ESC-50
takes several 5 s excerpts of one freesound clip), so the held-out part takes whole recordings, never single
clips of a recording that also trains.

Recording of a clip, from its file name:

  urbansound8k  ``[fsID]-[classID]-[occurrenceID]-[sliceID].wav`` -> fsID
  esc50         ``[fold]-[clip ID]-[take]-[target].wav``           -> clip ID
  synthetic     every clip is its own recording
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from esc2c.data.loader import FeatureSet
from esc2c.errors import Esc2cError


def recording_id(dataset: str, path: str) -> str:
    """The source recording a clip was cut from (see module doc)."""
    stem = Path(path).stem
    parts = stem.split("-")
    if dataset == "urbansound8k" and len(parts) == 4:
        return parts[0]
    if dataset == "esc50" and len(parts) == 4:
        return parts[1]
    return stem


def take_rows(fs: FeatureSet, mask: np.ndarray) -> FeatureSet:
    """The clips of ``fs`` where ``mask`` is true, in their order."""
    return FeatureSet(fs.x[mask], fs.y[mask], fs.folds[mask], list(fs.class_names),
                      [f for f, k in zip(fs.files, mask) if k], fs.spec)


def holdout_split(fs: FeatureSet, dataset: str, fraction: float, seed: int = 0) -> tuple[FeatureSet, FeatureSet]:
    """(rest, held): whole recordings, in a seeded random order, move to ``held`` until it holds at least
    ``fraction`` of the clips. Both parts keep the rows' original order."""
    if not 0.0 < float(fraction) < 1.0:
        raise Esc2cError(f"holdout fraction must be in (0, 1) (got {fraction})")
    if len(fs) != len(fs.files):
        raise Esc2cError(f"feature set lists {len(fs.files)} files for {len(fs)} clips; cannot split by recording")
    rec = np.array([recording_id(dataset, f) for f in fs.files])
    held, n_held = [], 0
    for r in np.random.default_rng(seed).permutation(np.unique(rec)):
        if n_held >= fraction * len(fs):
            break
        held.append(r)
        n_held += int((rec == r).sum())
    is_held = np.isin(rec, held)
    if is_held.all():
        raise Esc2cError(f"holdout fraction {fraction} leaves no training clips ({len(fs)} clips, "
                         f"{len(np.unique(rec))} recordings)")
    return take_rows(fs, ~is_held), take_rows(fs, is_held)
