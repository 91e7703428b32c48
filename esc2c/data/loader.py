"""Clips and log-mel features of a dataset's official folds, with an on-disk feature cache.

Folds come only from the official csv (no random splits). ``folds=None`` means every official fold that has
audio on disk. A requested fold without any audio is an error; listed clips whose file is missing are
skipped with one :class:`MissingClipsWarning` giving the count.

Clip length rule (see :func:`esc2c.features.fix_length`): shorter clips are zero-padded at the end, longer
clips keep their first ``clip_seconds``. UrbanSound8K slices are first cut to their listed ``end - start``.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import warnings
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from esc2c import features as fe
from esc2c.contract import DATASETS
from esc2c.data import esc50, synthetic, urbansound8k
from esc2c.data.audio import read_audio
from esc2c.data.catalog import Catalog, Entry
from esc2c.errors import Esc2cError
from esc2c.features import FeatureSpec
from esc2c.fsutil import atomic_path

SUBSETS = ("esc10",)  # also accepted wherever a dataset name is: ESC-50's ESC-10 rows, 10 classes
CACHE_VERSION = 1  # bump when the cached arrays' meaning changes
_CHUNK = 64  # clips decoded and transformed at a time


CLIP_SECONDS = {"synthetic": 1.0, "esc50": 5.0, "esc10": 5.0, "urbansound8k": 4.0}  # each set's natural length


def default_spec(dataset: str) -> FeatureSpec:
    """The default :class:`FeatureSpec` with the dataset's natural clip length (ESC-50 clips are 5 s,
    UrbanSound8K slices at most 4 s; the synthetic set uses 1 s so the whole chain runs in minutes)."""
    if dataset not in CLIP_SECONDS:
        raise Esc2cError(f"unknown dataset '{dataset}' (known: {', '.join(DATASETS + SUBSETS)})")
    return FeatureSpec(clip_seconds=CLIP_SECONDS[dataset])


class MissingClipsWarning(UserWarning):
    """Some listed clips have no audio file (the message gives the count)."""


@dataclass
class Clip:
    audio: np.ndarray  # float32 [n_samples] mono at the requested sample rate, fixed length
    label: int
    fold: int
    path: str


@dataclass
class FeatureSet:
    """Log-mel features of a dataset: ``x`` float32 ``[N, 1, n_mels, frames]`` normalised with
    ``spec.mean``/``spec.std``; ``y``, ``folds`` int64 ``[N]``."""

    x: np.ndarray
    y: np.ndarray
    folds: np.ndarray
    class_names: list[str]
    files: list[str]
    spec: FeatureSpec | None = None

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def subset(self, folds: list[int]) -> "FeatureSet":
        """The rows of the given folds (in their current order)."""
        absent = sorted(set(int(f) for f in folds) - set(self.folds.tolist()))
        if absent:
            raise Esc2cError(f"feature set has no fold {absent} (folds present: {sorted(set(self.folds.tolist()))})")
        m = np.isin(self.folds, list(folds))
        return FeatureSet(self.x[m], self.y[m], self.folds[m], list(self.class_names),
                          [f for f, k in zip(self.files, m) if k], self.spec)

    def stats(self) -> tuple[float, float]:
        """Mean and standard deviation of the un-normalised log-mel (dB) over every element: what
        ``spec.with_stats`` wants when these are the training folds."""
        s = self.spec or FeatureSpec()
        raw = self.x.astype(np.float64) * s.std + s.mean
        bad = np.flatnonzero(~np.isfinite(raw.reshape(len(raw), -1)).all(axis=1)) if len(raw) else []
        if len(bad):
            raise Esc2cError(f"{self.files[bad[0]]}: its log-mel features are not finite ({len(bad)} clip(s) so)")
        mean, std = float(raw.mean()), float(raw.std())
        if not std > 0:
            raise Esc2cError(f"the {len(raw)} training clips all give the same log-mel value ({mean:g} dB): the "
                             "audio is silent (or constant); check the dataset files")
        return mean, std

    def normalised(self, spec: FeatureSpec) -> "FeatureSet":
        """The same features normalised with ``spec.mean``/``spec.std`` (``spec`` may differ only in those)."""
        old = self.spec or FeatureSpec()
        if spec.with_stats(0, 1) != old.with_stats(0, 1):
            raise Esc2cError("feature set: renormalising needs a spec that differs only in mean/std")
        raw = self.x.astype(np.float64) * old.std + old.mean
        return replace(self, x=((raw - spec.mean) / spec.std).astype(np.float32), spec=spec)


@dataclass
class DatasetInfo:
    """Clips listed by the official csv vs found on disk, per fold and per class."""

    dataset: str
    root: str
    csv: str
    folds: list[tuple[int, int, int]]  # (fold, found, listed)
    classes: list[tuple[str, int, int]]  # (class name, found, listed)
    fold_dirs: dict[int, str] = field(default_factory=dict)

    @property
    def found(self) -> int:
        return sum(f for _, f, _ in self.folds)

    @property
    def listed(self) -> int:
        return sum(n for _, _, n in self.folds)

    @property
    def missing(self) -> int:
        return self.listed - self.found


# ---- catalogue and fold selection --------------------------------------------------------------------------
def get_catalog(dataset: str, data_dir: str | None, seed: int = 0, per_class: int = synthetic.PER_CLASS) -> Catalog:
    """The official listing of ``dataset`` under ``data_dir`` (ignored for the synthetic set)."""
    if dataset == "synthetic":
        if per_class < 1:
            raise Esc2cError(f"synthetic: per_class must be >= 1 (got {per_class})")
        return synthetic.catalog(seed, per_class)
    if dataset not in DATASETS + SUBSETS:
        raise Esc2cError(f"unknown dataset '{dataset}' (known: {', '.join(DATASETS + SUBSETS)})")
    if data_dir is None:
        raise Esc2cError(f"dataset '{dataset}' needs a data directory (--data-dir)")
    root = Path(data_dir)
    if not root.is_dir():
        raise Esc2cError(f"{root}: data directory not found")
    if dataset == "urbansound8k":
        return urbansound8k.catalog(root)
    return esc50.catalog(root, esc10=dataset == "esc10")


def select(cat: Catalog, folds: list[int] | None) -> list[Entry]:
    """The present clips of the requested folds, fold by fold in csv order; warns once about missing ones."""
    official = cat.folds
    by_fold: dict[int, list[Entry]] = {f: [] for f in official}
    for e in cat.entries:
        by_fold[e.fold].append(e)
    if folds is None:
        chosen = [f for f in official if any(e.path for e in by_fold[f])]
        if not chosen:
            raise Esc2cError(f"{cat.dataset}: no audio found for any fold under {cat.root} "
                             f"({len(cat.entries)} clips listed in {cat.csv})")
    else:
        chosen = []
        for f in folds:
            f = int(f)
            if f not in by_fold:
                raise Esc2cError(f"{cat.dataset}: fold {f} is not an official fold (folds: {', '.join(map(str, official))})")
            if not any(e.path for e in by_fold[f]):
                raise Esc2cError(f"{cat.dataset} fold {f}: no audio found in {cat.fold_dirs.get(f, cat.root)} "
                                 f"({len(by_fold[f])} clips listed)")
            if f not in chosen:
                chosen.append(f)
        chosen.sort()
    listed = [e for f in chosen for e in by_fold[f]]
    present = [e for e in listed if e.path]
    missing = len(listed) - len(present)
    if missing:
        warnings.warn(
            f"{cat.dataset}: {missing} of {len(listed)} clips listed for fold(s) {', '.join(map(str, chosen))} "
            f"have no audio file under {cat.root}; skipped",
            MissingClipsWarning,
            stacklevel=3,
        )
    return present


def _read(cat: Catalog, e: Entry, sample_rate: int, n_samples: int) -> np.ndarray:
    if cat.dataset == "synthetic":
        return synthetic.render_entry(e, sample_rate, n_samples)
    return fe.fix_length(read_audio(e.path, sample_rate, e.seconds), n_samples)


def load_clips(dataset: str, data_dir: str | None, folds: list[int] | None, sample_rate: int,
               clip_seconds: float, *, seed: int = 0, per_class: int = synthetic.PER_CLASS) -> list[Clip]:
    """Fixed-length mono float32 clips of the requested official folds (see the module docstring)."""
    n = int(round(sample_rate * clip_seconds))
    if sample_rate <= 0 or n <= 0:
        raise Esc2cError(f"load_clips: need a positive sample rate and clip length (got {sample_rate} Hz, {clip_seconds} s)")
    cat = get_catalog(dataset, data_dir, seed, per_class)
    return [Clip(_read(cat, e, sample_rate, n), e.label, e.fold, e.path) for e in select(cat, folds)]


# ---- features and their cache ------------------------------------------------------------------------------
def default_cache_dir() -> Path:
    """``$ESC2C_CACHE`` or ``~/.cache/esc2c``."""
    return Path(os.environ.get("ESC2C_CACHE") or Path.home() / ".cache" / "esc2c")


def _cache_key(cat: Catalog, entries: list[Entry], raw_spec: FeatureSpec) -> str:
    clips = []
    for e in entries:
        if cat.dataset == "synthetic":
            clips.append([e.name, e.label])
        else:
            st = os.stat(e.path)
            clips.append([e.name, e.label, os.path.abspath(e.path), st.st_size, st.st_mtime_ns, e.seconds])
    doc = {"cache": CACHE_VERSION, "dataset": cat.dataset, "spec": raw_spec.to_dict(), "clips": clips}
    if cat.dataset == "synthetic":
        doc["generator"] = synthetic.VERSION
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:20]


def _load_cached(path: Path, n: int, shape: tuple[int, int]) -> np.ndarray | None:
    try:
        with np.load(path) as z:
            x = z["x"]
    except (OSError, ValueError, KeyError):
        return None  # unreadable cache entry: recompute and replace it
    return x if x.shape == (n, *shape) and x.dtype == np.float32 else None


def _compute(cat: Catalog, entries: list[Entry], raw_spec: FeatureSpec, bar) -> np.ndarray:
    x = np.empty((len(entries), raw_spec.n_mels, raw_spec.frames), dtype=np.float32)
    for i in range(0, len(entries), _CHUNK):
        chunk = entries[i : i + _CHUNK]
        audio = np.stack([_read(cat, e, raw_spec.sample_rate, raw_spec.n_samples) for e in chunk])
        x[i : i + len(chunk)] = fe.logmel(raw_spec, audio)
        if bar is not None:
            bar.update(len(chunk))
    return x


def load_features(dataset: str, data_dir: str | None, folds: list[int] | None, spec: FeatureSpec,
                  cache_dir: str | None = None, progress: bool = True, *, seed: int = 0,
                  per_class: int = synthetic.PER_CLASS) -> FeatureSet:
    """Log-mel features (``spec``) of the requested official folds.

    Un-normalised log-mel is cached per fold under ``cache_dir`` (default :func:`default_cache_dir`) in a
    file keyed by the spec (without mean/std) and the fold's clip list (names, labels, paths, sizes, mtimes);
    a later call with the same key loads it instead of decoding audio. ``seed``/``per_class`` size the
    synthetic set (``data_dir`` is ignored for it).
    """
    cat = get_catalog(dataset, data_dir, seed, per_class)
    entries = select(cat, folds)
    raw_spec = spec.with_stats(0.0, 1.0)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    groups: dict[int, list[Entry]] = {}
    for e in entries:
        groups.setdefault(e.fold, []).append(e)

    parts, todo = {}, {}
    for f, es in groups.items():
        path = cache / "features" / f"{cat.dataset}-fold{f}-{_cache_key(cat, es, raw_spec)}.npz"
        x = _load_cached(path, len(es), raw_spec.shape) if path.is_file() else None
        if x is None:
            todo[f] = path
        else:
            parts[f] = x
    if todo:
        bar = None
        if progress:

            bar = tqdm(total=sum(len(groups[f]) for f in todo), desc=f"log-mel {cat.dataset}", unit="clip")
        try:
            for f, path in todo.items():
                parts[f] = _compute(cat, groups[f], raw_spec, bar)
                buf = io.BytesIO()
                np.savez(buf, x=parts[f])
                with atomic_path(path) as tmp:
                    tmp.write_bytes(buf.getvalue())
        finally:
            if bar is not None:
                bar.close()

    order = sorted(groups)
    x = np.concatenate([parts[f] for f in order])
    if spec.mean != 0.0 or spec.std != 1.0:
        x = ((x - np.float32(spec.mean)) / np.float32(spec.std)).astype(np.float32)
    es = [e for f in order for e in groups[f]]
    return FeatureSet(
        x=x[:, None],
        y=np.array([e.label for e in es], dtype=np.int64),
        folds=np.array([e.fold for e in es], dtype=np.int64),
        class_names=list(cat.class_names),
        files=[e.path for e in es],
        spec=spec,
    )


def dataset_info(dataset: str, data_dir: str | None, *, seed: int = 0,
                 per_class: int = synthetic.PER_CLASS) -> DatasetInfo:
    """Per-fold and per-class counts of clips found on disk vs listed in the official csv."""
    cat = get_catalog(dataset, data_dir, seed, per_class)
    listed_f = Counter(e.fold for e in cat.entries)
    found_f = Counter(e.fold for e in cat.entries if e.path)
    listed_c = Counter(e.label for e in cat.entries)
    found_c = Counter(e.label for e in cat.entries if e.path)
    return DatasetInfo(
        dataset=cat.dataset,
        root=cat.root,
        csv=cat.csv,
        folds=[(f, found_f[f], listed_f[f]) for f in sorted(listed_f)],
        classes=[(name, found_c[k], listed_c[k]) for k, name in enumerate(cat.class_names)],
        fold_dirs=dict(cat.fold_dirs),
    )
