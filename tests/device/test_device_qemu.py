"""The firmware on QEMU mps2-an500 (Cortex-M7) against the host build: same bits on 50 inputs and on every
layer, a per-layer instruction profile that adds up and repeats exactly, the serial protocol through
QEMU's UART (garbage, a stalled frame), faults and mismatches reported with non-zero exits.

The model is the small hand-written int8 model of tests/fixtures/fake_model.py (the board code does
not depend on the compiler); tests/device/test_device_emitted.py runs the same checks on `esc2c emit` output."""
from __future__ import annotations

import json
import re
import shutil
import time

import numpy as np
import pytest

from esc2c.cli import main as cli_main
from esc2c.errors import Esc2cError
from esc2c.device import protocol as P
from esc2c.device.build import build_firmware
from esc2c.device.qemu import QemuSession
from esc2c.device.runner import run_qemu
from esc2c.device.serial_runner import SerialRunner
from tests.fixtures.fake_model import FakeModel

pytestmark = pytest.mark.skipif(shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None,
                                reason="needs qemu-system-arm and gcc-arm-none-eabi (Debian packages)")


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    model = FakeModel(seed=3)
    out = model.write(tmp_path_factory.mktemp("fake") / "out", n_vectors=5)
    return out, model


def test_qemu_matches_host_on_50_inputs_and_every_layer(project):
    out, model = project
    lines = []
    report = run_qemu(out, vectors=50, debug_layers=True, timeout=300, echo=lines.append)
    assert (report.vectors, report.identical, report.layers_checked) == (50, 50, True)
    assert report.selftest == (5, 5)
    assert any("50/50 vectors bit-identical" in ln for ln in lines)


def test_profile_adds_up_and_repeats(project, tmp_path):
    out, model = project
    a = run_qemu(out, vectors=5, profile=True, profile_dir=tmp_path / "a", echo=lambda s: None).profile
    b = run_qemu(out, vectors=5, profile=True, profile_dir=tmp_path / "b", echo=lambda s: None).profile
    counts_a = [L.instructions for L in a.layers]
    assert counts_a == [L.instructions for L in b.layers]
    assert a.per_vector_instructions == b.per_vector_instructions and len(a.per_vector_instructions) == 5
    assert sum(counts_a) == a.total_instructions == a.per_vector_instructions[0]
    assert all(c > 0 for c in counts_a)
    # the dense layer with 96x40 MACs dominates; MACs come from the model's esc2c_layer_macs
    assert [L.macs for L in a.layers] == model.layer_macs
    assert counts_a[0] == max(counts_a)
    # the same inference by function (ELF symbols): adds up too, and the dense loop is in esc2c_model_run
    fn = {f["name"]: f["instructions"] for f in a.functions}
    assert sum(fn.values()) + a.unlisted_instructions == a.total_instructions
    assert a.functions == b.functions
    assert max(fn, key=fn.get) in ("dense", "esc2c_model_run")
    data = json.loads((tmp_path / "a" / "profile.json").read_text())
    assert data["total_instructions"] == a.total_instructions
    assert "estimate" in data["latency_note"]
    assert (tmp_path / "a" / "profile.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_serial_protocol_through_qemu_uart_survives_garbage_and_a_stalled_frame(project):
    out, model = project
    fw = build_firmware(out, "mps2-an500")
    with QemuSession(fw.elf, timeout=120) as q:
        port = q.connect()
        # garbage with a fake sync + header whose length swallows the PING that follows
        port.write(b"\x00garbage\xa5\xa5" + b"\xa5\x5a\x02\x07" + (20).to_bytes(4, "little"))
        runner = SerialRunner(port, timeout=5.0, retries=0)
        info = runner.hello()  # answered once the device's receive timeout drops the fake frame
        assert info.garbage_bytes >= 10 and info.rx_timeouts == 1
        assert not info.cycles_available  # QEMU has no cycle counter: reported unavailable, not faked
        # a frame that stops half-way: the device drops it after its 1 s receive timeout
        port.write(b"\xa5\x5a\x02\x08" + model.input_size.to_bytes(4, "little") + b"\x01" * 10)
        time.sleep(1.6)
        info = runner.hello()
        assert info.rx_timeouts == 2
        x = np.arange(model.input_size, dtype=np.int16).astype(np.int8) - 60
        result = runner.run(x, layers=True)
        expected = model.reference(x)
        assert np.array_equal(result.output, expected[-1])
        assert all(np.array_equal(a, b) for a, b in zip(result.layers, expected))
        assert result.cycles is None
        with pytest.raises(P.DeviceError, match="bad length"):
            runner._request(P.MSG_RUN, b"\x00" * 3, P.MSG_RESULT)
        runner.bye()
        port.close()
        code, console = q.finish()
    assert code == 0 and "@selftest 5 5" in console


def test_mismatch_names_vector_and_element(tmp_path):
    out = FakeModel(seed=4).write(tmp_path / "out", n_vectors=2)
    # the Cortex-M7 build (only) flips one output bit: the run must fail and say where
    src = (out / "model.c").read_text()
    (out / "model.c").write_text(src.replace("    return 0;\n}", "#ifdef __ARM_ARCH\n    output[3] ^= 1;\n#endif\n    return 0;\n}"))
    with pytest.raises(Esc2cError, match=r"QEMU self-test: test vector 0, output element 3"):
        run_qemu(out, vectors=3, echo=lambda s: None)
    assert cli_main(["run", str(out), "--target", "qemu", "--vectors", "3"]) == 1


def test_fault_exits_nonzero(tmp_path):
    out = FakeModel(seed=5).write(tmp_path / "out", n_vectors=1)
    src = (out / "model.c").read_text()
    (out / "model.c").write_text(src.replace(
        "int esc2c_model_run(const int8_t *input, int8_t *output)\n{",
        "int esc2c_model_run(const int8_t *input, int8_t *output)\n{\n#ifdef __ARM_ARCH\n"
        "    *(volatile int *)0xF0000000u = 1;\n#endif"))
    fw = build_firmware(out, "mps2-an500")
    with QemuSession(fw.elf, timeout=60) as q:
        code, console = q.finish()
    assert code == 3
    # the bus fault escalates to HardFault (HFSR.FORCED) since no fault handler is enabled separately
    assert re.search(r"fatal: fault exception, CFSR=0x[0-9a-f]{8} HFSR=0x40000000\n", console), console


def test_board_runner_path_through_qemu_uart(project, capsys):
    """`esc2c run OUT --port URL` (the real-board path) driven against the QEMU firmware's UART."""
    out, model = project
    fw = build_firmware(out, "mps2-an500")
    with QemuSession(fw.elf, timeout=120) as q:
        q.connect().close()  # QEMU is up; the command opens the port itself
        assert cli_main(["run", str(out), "--port", q.serial_url, "--vectors", "12", "--debug-layers"]) == 0
    assert "12/12 vectors bit-identical to the host build on every layer" in capsys.readouterr().out


def test_cli_needs_exactly_one_target(project):
    out, _ = project
    assert cli_main(["run", str(out)]) == 1
    assert cli_main(["run", str(out / "missing"), "--target", "qemu"]) == 1


def test_emulator_dying_mid_session_is_reported(project):
    out, _ = project
    fw = build_firmware(out, "mps2-an500")
    with QemuSession(fw.elf, timeout=60) as q:
        port = q.connect()
        runner = SerialRunner(port, timeout=5.0)
        runner.hello()
        q.kill()
        with pytest.raises(P.LinkError, match="serial link lost"):
            runner.hello()
        port.close()


def test_unknown_build_type_is_refused(tmp_path):
    """A build type CMake does not know would build the firmware unoptimised, without the kernels' DSP paths:
    refused before anything is configured."""
    with pytest.raises(Esc2cError, match=r"build type must be one of Release, .*got 'Fast'"):
        build_firmware(tmp_path, "mps2-an500", build_type="Fast")
    assert not any(tmp_path.iterdir())
