"""Where esc2c's non-Python files are: the jinja2 templates (templates/), the C runtime copied into every
emitted project (runtime/), the board support files (boards/) and the QEMU plugin's C source.

templates/, runtime/ and boards/ are top-level folders of the source tree. An installed wheel (``pip install .``
or ``python -m build --wheel``) carries copies of them as package data in ``esc2c/_data/`` (setup.py puts them
there at build time; the source tree never holds that folder). Each lookup takes the package-data copy when
there is one, else the source tree's folder (a checkout, or an editable install of it)."""
from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
DATA = PACKAGE / "_data"
SOURCE_TREE = PACKAGE.parent
RESOURCE_DIRS = ("templates", "runtime", "boards")


def _resource(name: str) -> Path:
    packaged = DATA / name
    return packaged if packaged.is_dir() else SOURCE_TREE / name


def templates_dir() -> Path:
    """The jinja2 templates of the emitted project (templates/, templates/host/, templates/tflm/)."""
    return _resource("templates")


def runtime_dir() -> Path:
    """The C runtime: include/ and src/ (the kernels) and frontend/ (the log-mel front end and its runners)."""
    return _resource("runtime")


def boards_dir() -> Path:
    """The board support files: one folder per board with its board.cmake, and common/."""
    return _resource("boards")


def qemu_plugin_source() -> Path:
    """The C source of the QEMU instruction-count plugin (package data of esc2c.device in either layout)."""
    return PACKAGE / "device" / "plugin" / "insn_count.c"


def source_checkout() -> Path | None:
    """The source tree esc2c is imported from, or None when it runs from an installed copy (a wheel in
    site-packages). A child process started with ``sys.executable -m esc2c...`` imports the same package
    from site-packages on its own; from a checkout it needs the checkout on its PYTHONPATH, since the
    environment's editable install may point at another checkout (or there may be none)."""
    if DATA.is_dir() or not (SOURCE_TREE / "pyproject.toml").is_file():
        return None
    return SOURCE_TREE
