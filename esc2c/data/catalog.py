"""What a dataset lists and which of it is on disk: the official csv rows resolved to audio files."""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

from esc2c.errors import Esc2cError

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")


@dataclass(frozen=True)
class Entry:
    """One listed clip. ``path`` is the audio file found for it, or None when it is missing on disk."""

    name: str  # the name the csv lists (e.g. 100032-3-0-0.wav)
    label: int
    fold: int
    path: str | None
    seconds: float | None = None  # the listed slice duration (UrbanSound8K end - start), None if not listed


@dataclass
class Catalog:
    dataset: str
    root: str
    csv: str
    class_names: list[str]
    entries: list[Entry]
    fold_dirs: dict[int, str] = field(default_factory=dict)  # where each fold's audio is looked for

    @property
    def folds(self) -> list[int]:
        return sorted({e.fold for e in self.entries})


def read_csv(path: Path, required: tuple[str, ...]) -> list[dict]:
    """Rows of an official metadata csv; a clear error when the file or one of ``required`` columns is missing."""
    if not path.is_file():
        raise Esc2cError(f"{path}: metadata csv not found (is the data directory the dataset's root?)")
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = [c for c in required if c not in (reader.fieldnames or [])]
            if missing:
                raise Esc2cError(f"{path}: missing column(s) {', '.join(missing)}")
            return list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise Esc2cError(f"{path}: cannot read metadata csv ({e})") from None


def parse_field(csv_path: Path, row_no: int, row: dict, column: str, kind):
    """``kind(row[column])`` with an error naming the csv, the row and the column."""
    value = row.get(column)
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise Esc2cError(f"{csv_path}: row {row_no}: column '{column}' has bad value {value!r}") from None


def index_audio(directory: Path) -> dict[str, dict[str, str]]:
    """``{stem: {extension: path}}`` of the audio files in one directory (empty if it does not exist)."""
    index: dict[str, dict[str, str]] = {}
    if not directory.is_dir():
        return index
    with os.scandir(directory) as it:
        for d in it:
            stem, ext = os.path.splitext(d.name)
            if ext.lower() in AUDIO_EXTENSIONS and d.is_file():
                index.setdefault(stem, {})[ext.lower()] = d.path
    return index


def resolve(name: str, index: dict[str, dict[str, str]]) -> str | None:
    """The audio file for a csv name: the listed extension first, then .wav, .flac, .ogg."""
    stem, ext = os.path.splitext(name)
    found = index.get(stem)
    if not found:
        return None
    for e in (ext.lower(),) + AUDIO_EXTENSIONS:
        if e in found:
            return found[e]
    return None
