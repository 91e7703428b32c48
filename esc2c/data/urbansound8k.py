"""UrbanSound8K (Salamon et al. 2014): metadata/UrbanSound8K.csv, audio/foldN/, 10 official folds, 10 classes.

Each row's ``end - start`` is the slice's listed duration: the loader uses at most that much of the file.
"""
from __future__ import annotations

from pathlib import Path

from esc2c.data.catalog import Catalog, Entry, index_audio, parse_field, read_csv, resolve
from esc2c.errors import Esc2cError

COLUMNS = ("slice_file_name", "start", "end", "fold", "classID", "class")


def catalog(root: Path) -> Catalog:
    csv_path = root / "metadata" / "UrbanSound8K.csv"
    rows = read_csv(csv_path, COLUMNS)
    indexes: dict[int, dict] = {}
    fold_dirs: dict[int, str] = {}
    names: dict[int, str] = {}
    entries = []
    for i, r in enumerate(rows, start=2):
        fold = parse_field(csv_path, i, r, "fold", int)
        label = parse_field(csv_path, i, r, "classID", int)
        start = parse_field(csv_path, i, r, "start", float)
        end = parse_field(csv_path, i, r, "end", float)
        names.setdefault(label, r["class"])
        if fold not in indexes:
            fold_dirs[fold] = str(root / "audio" / f"fold{fold}")
            indexes[fold] = index_audio(Path(fold_dirs[fold]))
        name = r["slice_file_name"]
        seconds = end - start if end > start else None
        entries.append(Entry(name, label, fold, resolve(name, indexes[fold]), seconds))
    labels = sorted(names)
    if labels != list(range(len(labels))):
        raise Esc2cError(f"{csv_path}: classID values must be 0..{len(labels) - 1}, got {labels}")
    return Catalog("urbansound8k", str(root), str(csv_path), [names[k] for k in labels], entries,
                   dict(sorted(fold_dirs.items())))
