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


REQUIRED_TOOLS = ("gcc", "cmake", "arm-none-eabi-gcc", "qemu-system-arm")


def pytest_configure(config):
    # scripts/setup.sh installs these; a missing one must fail the run, not quietly skip the C, firmware and
    # emulator tests. Set ESC2C_ALLOW_MISSING_TOOLS=1 to run only what this machine can.
    import os
    import shutil

    # `-m slow` without an explicit --hypothesis-profile runs the thorough fuzz profile
    markexpr = config.getoption("-m") or ""
    if "slow" in markexpr and "not slow" not in markexpr and not config.getoption("hypothesis_profile", None):
        from hypothesis import settings as hypothesis_settings

        hypothesis_settings.load_profile("slow")

    missing = [t for t in REQUIRED_TOOLS if shutil.which(t) is None]
    if missing and os.environ.get("ESC2C_ALLOW_MISSING_TOOLS") != "1":
        raise pytest.UsageError(f"tools missing: {', '.join(missing)} (run scripts/setup.sh, or set "
                                "ESC2C_ALLOW_MISSING_TOOLS=1 to skip the tests that need them)")


# Property-based tests (hypothesis): the default profile keeps the default run short; "slow" is what the
# slow suite (-m slow) uses unless --hypothesis-profile names another. Tests that need a fixed count
# (e.g. 100,000 streams) set max_examples themselves.
try:
    from hypothesis import HealthCheck, settings

    settings.register_profile("default", max_examples=100, deadline=None, derandomize=True, database=None,
                              print_blob=True)
    settings.register_profile("slow", max_examples=2_000, deadline=None, print_blob=True,
                              suppress_health_check=[HealthCheck.too_slow])
    settings.load_profile("default")
except ImportError:  # hypothesis is a test extra; without it the fuzz modules fail at import
    pass
