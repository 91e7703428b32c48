import os
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
def _few_threads():
    # 2-core CI machine: keep torch from oversubscribing.
    try:
        import torch
        torch.set_num_threads(min(2, os.cpu_count() or 1))
    except ImportError:
        pass
