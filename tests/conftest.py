from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        raise FileNotFoundError(f"../shared/data not found beside the project (expected {SHARED_DATA})")
    return SHARED_DATA


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    # The test models are tiny: one torch thread is faster than two, and much faster on a loaded 2-core machine.
    try:
        import torch
        torch.set_num_threads(1)
    except ImportError:
        pass
