"""Write outputs atomically: build into a temporary sibling, rename at the end (nothing half-written).

Output directories of esc2c commands carry a marker file (``.esc2c-output``) naming the command that wrote
them. :func:`claim_output_dir` decides whether a command may (re)write a directory: a missing or empty
directory, or one written by the same command, is fine; one written by another esc2c command only with
``force``; anything else (a user's own files) never.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from esc2c import __version__
from esc2c.errors import Esc2cError

MARKER = ".esc2c-output"


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike):
    """Yield a temp path next to ``dest``; on success it replaces ``dest``, on error it is removed.

    Works for files and for directories that :func:`claim_output_dir` has cleared for replacement: whatever
    the caller creates at the yielded path is moved.
    """
    dest = Path(dest)
    _make_parent(dest)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    except OSError as e:
        raise Esc2cError(f"{dest}: cannot write beside it in {dest.parent} ({_reason(e)})") from None
    target = tmp / dest.name
    try:
        yield target
        old = tmp / ".replaced"
        moved = False
        try:
            if dest.is_dir() and not dest.is_symlink():
                # swap: the old directory moves into the temp dir (removed below), the new one takes its place
                os.replace(dest, old)
                moved = True
            os.replace(target, dest)
        except OSError as e:
            if moved and not dest.exists():
                os.replace(old, dest)
            raise Esc2cError(f"{dest}: cannot replace it ({_reason(e)})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def atomic_write_bytes(dest: str | os.PathLike, data: bytes) -> None:
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(dest: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(dest, text.encode())


def _reason(e: OSError) -> str:
    if e.errno == errno.EROFS:
        return "read-only file system"
    if e.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if e.errno == errno.ENOTDIR:
        return "a path component is a file, not a directory"
    if e.errno == errno.ENOSPC:
        return "no space left on device"
    return e.strerror or type(e).__name__


def _make_parent(dest: Path) -> None:
    for p in [dest.parent, *dest.parent.parents]:
        if p.exists() and not p.is_dir():
            raise Esc2cError(f"{dest}: {p} is a file, not a directory")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise Esc2cError(f"{dest}: cannot create {dest.parent} ({_reason(e)})") from None


def read_marker(path: str | os.PathLike) -> str | None:
    """The command that wrote the output directory ``path`` (None: no readable marker)."""
    try:
        return str(json.loads((Path(path) / MARKER).read_text())["command"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def marker_text(command: str) -> str:

    return json.dumps({"command": command, "version": __version__}) + "\n"


def claim_output_dir(dest: str | os.PathLike, command: str, force: bool = False,
                     inputs: tuple[str | os.PathLike, ...] = (),
                     looks_like: Callable[[Path], bool] | None = None) -> Path:
    """Check that ``command`` may write the output directory ``dest``; return it (absolute).

    Refused with one line: a file in the way, the current directory (or one above it), a directory that
    holds one of ``inputs``, a directory of someone else's files, and (without ``force``) the output of
    another esc2c command. The parent must be writable. ``looks_like(dest)`` recognises the command's outputs
    written before markers existed."""
    dest = Path(os.path.abspath(dest))
    if dest.exists() and not dest.is_dir():
        raise Esc2cError(f"{dest}: exists and is not a directory")
    if dest.is_symlink():
        raise Esc2cError(f"{dest}: is a symbolic link; give the directory it points to")
    cwd = Path.cwd().resolve()
    real = dest.resolve()
    if real == cwd or real in cwd.parents:
        raise Esc2cError(f"{dest}: is the current directory (or contains it); give a new directory to write")
    for src in inputs:
        s = Path(src).resolve()
        if real in s.parents:
            raise Esc2cError(f"{dest}: contains the input {src}; write the output somewhere else")
    if dest.is_dir():
        try:
            entries = [p.name for p in dest.iterdir()]
        except OSError as e:
            raise Esc2cError(f"{dest}: cannot read it ({_reason(e)})") from None
        owner = read_marker(dest)
        if owner is None and entries and looks_like is not None and looks_like(dest):
            owner = command
        if entries and owner is None:
            shown = ", ".join(sorted(entries)[:3]) + (", ..." if len(entries) > 3 else "")
            raise Esc2cError(f"{dest}: not empty and not written by esc2c ({shown}); refusing to replace it "
                             "(give a new or empty directory)")
        if _read_only_fs(dest):
            raise Esc2cError(f"{dest}: is on a read-only file system")
        if owner is not None and owner != command and not force:
            raise Esc2cError(f"{dest}: holds the output of `esc2c {owner}`; pass --force to replace it, "
                             "or give another directory")
    _make_parent(dest)
    if not os.access(dest.parent, os.W_OK | os.X_OK) or _read_only_fs(dest.parent):
        raise Esc2cError(f"{dest}: cannot write in {dest.parent} (read-only file system or permission denied)")
    return dest


def _read_only_fs(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


@contextlib.contextmanager
def output_dir(dest: str | os.PathLike, command: str, force: bool = False,
               inputs: tuple[str | os.PathLike, ...] = (), looks_like: Callable[[Path], bool] | None = None):
    """Write a whole output directory: yield a new temporary sibling; on success it gets the marker and
    replaces ``dest`` (checked by :func:`claim_output_dir` first), on error it is removed."""
    dest = claim_output_dir(dest, command, force, inputs, looks_like)
    with atomic_path(dest) as tmp:
        try:
            tmp.mkdir()
        except OSError as e:
            raise Esc2cError(f"{dest}: cannot create a temporary directory beside it ({_reason(e)})") from None
        yield tmp
        (tmp / MARKER).write_text(marker_text(command))


def open_run_dir(dest: str | os.PathLike, command: str, force: bool = False,
                 looks_like: Callable[[Path], bool] | None = None) -> tuple[Path, bool]:
    """A resumable run directory (``esc2c compress``): a new one is created as a temporary sibling holding
    the marker and renamed into place; an existing one of the same command is reused. Returns (path,
    created) - pass ``created`` to :func:`discard_if_unused` when the run fails."""
    dest = claim_output_dir(dest, command, force, looks_like=looks_like)
    if read_marker(dest) == command:
        return dest, False
    if dest.is_dir() and looks_like is not None and any(dest.iterdir()) and looks_like(dest):
        try:                               # an older run of this command: mark it, keep its stages
            (dest / MARKER).write_text(marker_text(command))
        except OSError as e:
            raise Esc2cError(f"{dest}: cannot write it ({_reason(e)})") from None
        return dest, False
    with atomic_path(dest) as tmp:         # new, empty, or another command's output with --force
        try:
            tmp.mkdir()
            (tmp / MARKER).write_text(marker_text(command))
        except OSError as e:
            raise Esc2cError(f"{dest}: cannot create it ({_reason(e)})") from None
    return dest, True


def prune_empty_dirs(root: str | os.PathLike) -> None:
    """Remove empty directories below ``root`` (not ``root`` itself), deepest first."""
    root = Path(root)
    if not root.is_dir():
        return
    for d in sorted((p for p in root.rglob("*") if p.is_dir() and not p.is_symlink()),
                    key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            d.rmdir()


def discard_if_unused(dest: str | os.PathLike, created: bool) -> None:
    """After a failed run: drop empty directories inside ``dest``, and ``dest`` itself when this run
    created it and it holds nothing but the marker."""
    dest = Path(dest)
    prune_empty_dirs(dest)
    if created and dest.is_dir() and [p.name for p in dest.iterdir()] == [MARKER]:
        shutil.rmtree(dest, ignore_errors=True)
