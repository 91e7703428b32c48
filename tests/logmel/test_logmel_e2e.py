"""Raw audio end to end: `esc2c emit` of a model carrying its FeatureSpec generates the C front end; the
emitted project's C front end + C model on real UrbanSound8K / ESC-50 clips equal the Python pipeline
(host; QEMU Cortex-M7 and the stm32f746zg build in the slow tests)."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from _logmel_models import clip_files, label_of, make_model, read
from esc2c.compiler.emit import emit
from esc2c.errors import Esc2cError
from esc2c.compiler import audio_check

needs_cmake = pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not installed")
SECONDS = {"urbansound8k": 4.0, "esc50": 5.0}
N_CLASSES = {"urbansound8k": 10, "esc50": 50}


def _project(tmp_path_factory, shared_data, dataset, n_train=16, n_test=24):
    tmp = tmp_path_factory.mktemp(f"fe_{dataset}")
    files = clip_files(shared_data, dataset, n_train + n_test)
    train, test = files[::2][:n_train], files[1::2][:n_test]
    model = tmp / "model.onnx"
    make_model(model, SECONDS[dataset], read(train), [label_of(f) for f in train], N_CLASSES[dataset], epochs=8)
    r = emit(model, tmp / "out", board="stm32f746zg", n_vectors=2, audio=[test[0]])
    return r, read(test)


@pytest.fixture(scope="module")
def us8k(tmp_path_factory, shared_data):
    return _project(tmp_path_factory, shared_data, "urbansound8k")


@pytest.fixture(scope="module")
def esc50(tmp_path_factory, shared_data):
    return _project(tmp_path_factory, shared_data, "esc50")


def test_emit_generates_the_front_end(us8k):
    r, _ = us8k
    for name in ("esc2c_frontend_config.h", "esc2c_frontend_tables.c", "audio_vectors.h",
                 "runtime/frontend/esc2c_frontend.c", "runtime/frontend/esc2c_frontend.h"):
        assert (r.out / name).is_file(), name
    cfg = (r.out / "esc2c_frontend_config.h").read_text()
    assert "#define ESC2C_FE_FRAMES           124" in cfg and "arm_rfft_fast_init_1024_f32" in cfg
    cml = (r.out / "CMakeLists.txt").read_text()
    assert "CMSIS_DSP_PATH" in cml and "esc2c_audio_host" in cml and "firmware_audio" in cml


@needs_cmake
@pytest.mark.parametrize("which", ["us8k", "esc50"])
def test_raw_audio_c_equals_python(which, request):
    r, pcms = request.getfixturevalue(which)
    rep = audio_check.compare(r.out, pcms)
    assert rep.identical_share >= 0.99, rep.text()
    assert rep.max_diff <= 1, rep.text()
    assert rep.class_agreement >= 0.99, rep.text()
    assert len(set(rep.py_classes.tolist())) > 1, "the model predicts one class for every clip: a weak check"


@needs_cmake
def test_emitted_audio_self_test_passes(us8k):
    """The project's ctest: compiled-in PCM clips through front end + model, streaming == whole clip."""
    r, _ = us8k
    exe = audio_check.build_host(r.out)
    p = subprocess.run([str(exe)], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout
    assert "@audio_done 2 2" in p.stdout


def test_no_frontend_flag_and_model_without_spec(us8k, tmp_path):
    r, _ = us8k
    plain = emit(r.out / "model.onnx", tmp_path / "plain", n_vectors=1, frontend=False)
    assert not (plain.out / "esc2c_frontend_config.h").exists()
    assert "CMSIS_DSP_PATH" not in (plain.out / "CMakeLists.txt").read_text()
    import onnx
    m = onnx.load(str(r.out / "model.onnx"))
    del m.metadata_props[:]
    onnx.save(m, str(tmp_path / "nospec.onnx"))
    auto = emit(tmp_path / "nospec.onnx", tmp_path / "auto", n_vectors=1)
    assert not (auto.out / "audio_vectors.h").exists()
    with pytest.raises(Esc2cError, match="no front end"):
        audio_check.build_host(plain.out)
    with pytest.raises(Esc2cError, match="FeatureSpec"):
        emit(tmp_path / "nospec.onnx", tmp_path / "forced", n_vectors=1, frontend=True)
    assert not (tmp_path / "forced").exists()


@pytest.mark.slow
@pytest.mark.parametrize("which", ["us8k", "esc50"])
def test_raw_audio_on_qemu_cortex_m7(which, request):
    """firmware_audio on QEMU mps2-an500: the compiled-in clips through front end + model on the M7 match
    the Python pipeline (>= 99 % identical input, max 1 LSB, same class, streaming == whole clip)."""
    from esc2c.logmel import firmware

    r, _ = request.getfixturevalue(which)
    fw, run = firmware.run(r.out)
    assert run.exit_code == 0, run.console[-2000:]
    assert len(run.clips) == 2 and all(c.passed for c in run.clips), run.clips
    assert all(c.identical >= 0.99 * c.size and c.max_diff <= 1 for c in run.clips)
    assert min(run.frontend_instructions) > 0 and all(len(h) > 0 for h in run.hop_instructions)


@pytest.mark.slow
def test_stm32f746zg_raw_audio_firmware_fits(us8k):
    from esc2c.logmel import firmware

    r, _ = us8k
    fw = firmware.build(r.out, "stm32f746zg")
    assert fw.elf.is_file()
    assert 0 < fw.flash_bytes <= fw.flash_limit and 0 < fw.ram_bytes <= fw.ram_limit
    # only the 1024-point FFT's tables are linked (size-specific init + --gc-sections)
    syms = subprocess.run(["arm-none-eabi-nm", str(fw.elf)], capture_output=True, text=True, check=True).stdout
    assert "twiddleCoef_rfft_1024" in syms
    assert not any(f"twiddleCoef_rfft_{n}" in syms for n in (32, 64, 128, 256, 512, 2048, 4096))
    fp = firmware.frontend_footprint(fw.elf)
    assert 0 < fp["flash_total"] < 40 * 1024 and fp["state_ram"] > 0


@needs_cmake
def test_audio_command(us8k, shared_data, capsys):
    from esc2c.cli import main

    r, _ = us8k
    clip = clip_files(shared_data, "urbansound8k", 3)[2]
    assert main(["audio", str(r.out), str(clip)]) == 0
    assert "1 clips: int8 input identical" in capsys.readouterr().out
    assert main(["audio", str(r.out), str(clip), "--target", "qemu"]) == 1
    assert "compiled into the firmware" in capsys.readouterr().err


@needs_cmake
def test_cmsis_dsp_path_override_is_checked(us8k, tmp_path):
    r, _ = us8k
    p = subprocess.run(["cmake", "-S", str(r.out), "-B", str(tmp_path / "b"), f"-DCMSIS_DSP_PATH={tmp_path}"],
                       capture_output=True, text=True)
    assert p.returncode != 0 and "has no Include/arm_math.h" in p.stdout + p.stderr
