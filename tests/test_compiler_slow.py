"""Longer sweeps of the compiler's bit-exactness (run with -m slow)."""
import shutil

import pytest

from _compiler_models import build
from esc2c.compiler.emit import emit
from esc2c.compiler.verify import verify

pytestmark = [pytest.mark.slow, pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not installed")]


@pytest.mark.parametrize("kind,per_channel,uint8", [("vgg", True, False), ("resnet", True, False),
                                                    ("resnet", False, True), ("vgg_asym", True, False),
                                                    ("strip", False, False)])
def test_many_inputs_both_roundings(tmp_path, kind, per_channel, uint8):
    model = build(kind, tmp_path, per_channel=per_channel, uint8=uint8)
    r = emit(model, tmp_path / "out", n_vectors=32)
    for rounding in ("double", "single"):
        rep = verify(r.out, n=300, rounding=rounding, seed=7)
        assert rep.ok, rep.text()
