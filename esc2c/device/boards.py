"""Board support files: where they live and how an emitted project gets its copy."""
from __future__ import annotations

import shutil
from pathlib import Path

from esc2c.errors import Esc2cError
from esc2c.resources import boards_dir

BOARDS_DIR = boards_dir()
COMMON = "common"


def available_boards() -> list[str]:
    return sorted(p.name for p in BOARDS_DIR.iterdir() if p.is_dir() and p.name != COMMON and (p / "board.cmake").is_file())


def board_dir(board: str) -> Path:
    path = BOARDS_DIR / board
    if board == COMMON or not (path / "board.cmake").is_file():
        raise Esc2cError(f"unknown board {board!r}: the boards are {', '.join(available_boards())}")
    return path


def copy_board(board: str, dest: str | Path) -> Path:
    """Copy boards/<board>/ to ``dest`` and boards/common/ to ``dest``/common/ (board.cmake and
    toolchain.cmake find the shared sources there). ``dest`` is replaced if it exists."""
    src = board_dir(board)
    dest = Path(dest)
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(src, dest)
    shutil.copytree(BOARDS_DIR / COMMON, dest / COMMON)
    return dest
