"""ESC-50 (Piczak 2015): meta/esc50.csv, audio/ (flat), 5 official folds, 50 classes; ESC-10 is its esc10 subset."""
from __future__ import annotations

from pathlib import Path

from esc2c.data.catalog import Catalog, Entry, index_audio, parse_field, read_csv, resolve

COLUMNS = ("filename", "fold", "target", "category", "esc10")


def _truth(v: str) -> bool:
    if v.strip().lower() in ("true", "1"):
        return True
    if v.strip().lower() in ("false", "0"):
        return False
    raise ValueError(v)


def catalog(root: Path, esc10: bool = False) -> Catalog:
    """The ESC-50 listing under ``root``. With ``esc10`` only the ESC-10 rows, labels renumbered 0..9 in the
    order of their ESC-50 targets."""
    csv_path = root / "meta" / "esc50.csv"
    rows = read_csv(csv_path, COLUMNS)
    audio_dir = root / "audio"
    index = index_audio(audio_dir)
    parsed = []
    names: dict[int, str] = {}
    for i, r in enumerate(rows, start=2):
        target = parse_field(csv_path, i, r, "target", int)
        fold = parse_field(csv_path, i, r, "fold", int)
        in10 = parse_field(csv_path, i, r, "esc10", _truth)
        names.setdefault(target, r["category"])
        if esc10 and not in10:
            continue
        parsed.append((r["filename"], target, fold))
    targets = sorted({t for _, t, _ in parsed}) if esc10 else sorted(names)
    remap = {t: k for k, t in enumerate(targets)}

    entries = [Entry(name, remap[t], fold, resolve(name, index)) for name, t, fold in parsed]
    folds = sorted({e.fold for e in entries})
    return Catalog(
        dataset="esc10" if esc10 else "esc50",
        root=str(root),
        csv=str(csv_path),
        class_names=[names[t] for t in targets],
        entries=entries,
        fold_dirs={f: str(audio_dir) for f in folds},
    )
