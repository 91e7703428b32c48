"""Build hook (the project's metadata is in pyproject.toml): a wheel or a non-editable install carries the
top-level templates/, runtime/ and boards/ as package data in esc2c/_data/, copied into the build directory
only, never into the source tree. An editable install reads them from the source tree
(esc2c/resources.py)."""
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
RESOURCE_DIRS = ("templates", "runtime", "boards")  # esc2c.resources.RESOURCE_DIRS


class build_py_with_resources(build_py):
    def run(self):
        super().run()
        if self.editable_mode:
            return
        data = Path(self.build_lib) / "esc2c" / "_data"
        for name in RESOURCE_DIRS:
            if (data / name).exists():
                shutil.rmtree(data / name)
            shutil.copytree(ROOT / name, data / name, ignore=shutil.ignore_patterns("__pycache__", "*.py[co]"))


setup(cmdclass={"build_py": build_py_with_resources})
