"""Outputs never clobber, and bad inputs get one line: `esc2c emit` / `esc2c compress` output directories
(marker, --force, read-only, under a file, the current directory, the input inside), NaN scales, truncated
stage checkpoints, `esc2c audio` on a non-project - each checked through the CLI, with nothing left behind."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import yaml
from onnx import numpy_helper

from esc2c.cli import main
from esc2c.fsutil import MARKER, read_marker

from _compiler_models import build

TINY = {"synthetic_per_class": 6, "width": 0.25, "prune_ratio": 0.6, "ratio_sweep": [],
        "features": {"n_mels": 16, "clip_seconds": 0.5, "n_fft": 256, "win_length": 256, "hop_length": 128},
        "epochs_teacher": 1, "epochs_prune": 1, "epochs_qat_ta": 1, "epochs_qakd": 1, "batch_size": 16,
        "calib_batches": 1, "threads": 1}


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return build("strip", tmp_path_factory.mktemp("strip"))


@pytest.fixture
def tiny_config(tmp_path, monkeypatch):
    monkeypatch.setenv("ESC2C_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


def _err(capsys) -> str:
    err = capsys.readouterr().err
    errors = [ln for ln in err.splitlines() if ln.startswith("esc2c: error: ")]   # (progress bars aside)
    assert len(errors) == 1 and err.rstrip().endswith(errors[0]) and "Traceback" not in err, err
    return errors[0]


def _snapshot(d: Path) -> dict:
    return {str(p.relative_to(d)): p.read_bytes() if p.is_file() else None for p in sorted(d.rglob("*"))}


def _no_temp_siblings(d: Path) -> None:
    left = [p.name for p in d.parent.iterdir() if p.name.startswith(f".{d.name}.")]
    assert not left, left


@pytest.fixture
def read_only_dir(tmp_path):
    """A directory on a read-only tmpfs mount (as root, file modes alone do not stop writes)."""
    d = tmp_path / "ro"
    d.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(d)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs here: {r.stderr.strip()}")
    try:
        yield d
    finally:
        subprocess.run(["umount", str(d)], check=True)


def test_emit_writes_a_marker_and_replaces_only_its_own_output(model, tmp_path, capsys):
    out = tmp_path / "proj"
    assert main(["emit", str(model), "-o", str(out)]) == 0
    assert read_marker(out) == "emit" and (out / "model.c").is_file()
    (out / "model.c").write_text("stale")
    assert main(["emit", str(model), "-o", str(out)]) == 0          # its own output: replaced
    assert (out / "model.c").read_text() != "stale"
    _no_temp_siblings(out)

    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["emit", str(model), "-o", str(empty)]) == 0
    assert (empty / "model.c").is_file()
    capsys.readouterr()


def test_emit_refuses_foreign_files(model, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    before = _snapshot(out)
    for extra in ([], ["--force"]):
        assert main(["emit", str(model), "-o", str(out), *extra]) == 1
        err = _err(capsys)
        assert f"{out}: not empty and not written by esc2c (thesis.tex)" in err
        assert _snapshot(out) == before
    _no_temp_siblings(out)


def test_emit_over_a_compress_run_needs_force_and_never_its_own_input(model, tmp_path, capsys):
    run = tmp_path / "run"
    (run / "stages" / "teacher").mkdir(parents=True)
    (run / MARKER).write_text(json.dumps({"command": "compress"}))
    (run / "report.json").write_text("{}")
    model_in_run = run / "model.onnx"
    model_in_run.write_bytes(model.read_bytes())
    before = _snapshot(run)
    assert main(["emit", str(model), "-o", str(run)]) == 1
    assert "holds the output of `esc2c compress`; pass --force" in _err(capsys)
    assert main(["emit", str(model_in_run), "-o", str(run), "--force"]) == 1
    assert f"{run}: contains the input {model_in_run}" in _err(capsys)
    assert _snapshot(run) == before
    assert main(["emit", str(model), "-o", str(run), "--force"]) == 0
    assert read_marker(run) == "emit" and not (run / "stages").exists()
    capsys.readouterr()


def test_emit_output_under_a_file_or_current_directory(model, tmp_path, capsys, monkeypatch):
    f = tmp_path / "notes.txt"
    f.write_text("x")
    assert main(["emit", str(model), "-o", str(f / "proj")]) == 1
    assert f"{f} is a file, not a directory" in _err(capsys)
    assert main(["emit", str(model), "-o", str(f)]) == 1
    assert f"{f}: exists and is not a directory" in _err(capsys)
    assert f.read_text() == "x"
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert main(["emit", str(model), "-o", "."]) == 1
    assert "is the current directory (or contains it)" in _err(capsys)
    assert main(["emit", str(model), "-o", ".."]) == 1
    assert "is the current directory (or contains it)" in _err(capsys)
    assert list(work.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "work"]


def test_emit_and_compress_on_a_read_only_mount(model, read_only_dir, tiny_config, capsys):
    assert main(["emit", str(model), "-o", str(read_only_dir / "proj")]) == 1
    assert f"{read_only_dir / 'proj'}: cannot write in {read_only_dir} (read-only file system" in _err(capsys)
    assert main(["emit", str(model), "-o", str(read_only_dir)]) == 1      # the (empty) mount point itself
    assert "read-only" in _err(capsys)
    assert main(["compress", "--config", str(tiny_config), "-o", str(read_only_dir / "run")]) == 1
    assert f"{read_only_dir / 'run'}: cannot write in {read_only_dir} (read-only file system" in _err(capsys)
    assert list(read_only_dir.iterdir()) == []


def test_compress_output_checks_and_no_empty_directory_after_a_failure(tiny_config, tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert main(["compress", "--config", str(tiny_config), "-o", str(f / "run")]) == 1
    assert f"{f} is a file, not a directory" in _err(capsys)
    mine = tmp_path / "photos"
    mine.mkdir()
    (mine / "a.jpg").write_bytes(b"\xff\xd8")
    assert main(["compress", "--config", str(tiny_config), "-o", str(mine)]) == 1
    assert "not empty and not written by esc2c (a.jpg)" in _err(capsys)
    assert [p.name for p in mine.iterdir()] == ["a.jpg"]
    # a run that fails after the directory was claimed (no such dataset folder) leaves nothing
    out = tmp_path / "run"
    assert main(["compress", "--config", str(tiny_config), "--dataset", "urbansound8k",
                 "--data-dir", str(tmp_path / "nowhere"), "-o", str(out)]) == 1
    assert "nowhere" in _err(capsys)
    assert not out.exists()
    _no_temp_siblings(out)


def test_truncated_checkpoint_of_a_finished_stage_is_one_line(tiny_config, tmp_path, capsys):
    out = tmp_path / "run"
    stage = out / "stages" / "teacher"
    stage.mkdir(parents=True)
    (out / MARKER).write_text(json.dumps({"command": "compress"}))
    buf = tmp_path / "full.pt"
    torch.save({"model_config": {}, "state_dict": {"w": torch.zeros(1000)}}, buf)
    (stage / "model.pt").write_bytes(buf.read_bytes()[:300])
    (stage / "DONE").write_text("{}")
    before = _snapshot(out)
    assert main(["compress", "--config", str(tiny_config), "-o", str(out)]) == 1
    err = _err(capsys)
    assert f"{stage / 'model.pt'}: stage 'teacher' is marked done but its checkpoint is unreadable" in err
    assert f"delete {stage} to redo it" in err
    assert _snapshot(out) == before


def _with_scale(model: Path, dest: Path, which: str) -> Path:
    """A copy of the QDQ model whose first weight (or bias) DequantizeLinear scale is NaN."""
    m = onnx.load(str(model))
    inits = {i.name: i for i in m.graph.initializer}
    for n in m.graph.node:
        if n.op_type == "DequantizeLinear" and n.input[0] in inits:
            dtype = numpy_helper.to_array(inits[n.input[0]]).dtype
            if (which == "weight") == (dtype == np.int8):
                s = numpy_helper.to_array(inits[n.input[1]]).copy()
                s.flat[0] = np.nan
                inits[n.input[1]].CopyFrom(numpy_helper.from_array(s, n.input[1]))
                onnx.save(m, str(dest))
                return dest
    raise AssertionError(f"no {which} DequantizeLinear")


@pytest.mark.parametrize("which", ["weight", "bias"])
def test_nan_scale_is_one_line_and_writes_nothing(model, tmp_path, capsys, which):
    bad = _with_scale(model, tmp_path / f"nan_{which}.onnx", which)
    out = tmp_path / "proj"
    assert main(["emit", str(bad), "-o", str(out)]) == 1
    err = _err(capsys)
    assert f"{bad}: node '" in err and "(DequantizeLinear): scale '" in err and "must be finite and positive, got nan" in err
    assert not out.exists()
    _no_temp_siblings(out)


def test_audio_on_a_directory_that_is_not_a_project(tmp_path, capsys):
    d = tmp_path / "clips"
    d.mkdir()
    (d / "a.wav").write_bytes(b"RIFF")
    assert main(["audio", str(d)]) == 1
    assert f"{d}: not an emitted esc2c project, missing model.h, model.c" in _err(capsys)
    assert [p.name for p in d.iterdir()] == ["a.wav"]


def test_readme_firmware_configure_line_works_with_relative_paths(model, tmp_path):
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    line = next(ln for ln in readme.splitlines() if ln.startswith("cmake -S build/us8k"))
    configure = line.split("&&")[0].split()
    assert main(["emit", str(model), "--board", "stm32f746zg", "-o", str(tmp_path / "build" / "us8k")]) == 0
    r = subprocess.run(configure, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    cache = (tmp_path / "build" / "us8k" / "out" / "CMakeCache.txt").read_text()
    assert "CMAKE_C_COMPILER_AR:FILEPATH=" in cache and "arm-none-eabi-gcc-ar" in cache   # cross-compiling


def _tiny_esc50(root: Path, audio) -> Path:
    """An ESC-50-layout folder: 2 folds x 2 classes x 2 clips of 0.5 s at 16 kHz; ``audio(i)`` makes clip i."""
    import soundfile as sf

    (root / "meta").mkdir(parents=True)
    (root / "audio").mkdir()
    rows = ["filename,fold,target,category,esc10,src_file,take"]
    for i in range(8):
        name = f"{i % 2 + 1}-{i}-A-{i % 2}.wav"
        sf.write(root / "audio" / name, audio(i), 16000, subtype="FLOAT")
        rows.append(f"{name},{i // 4 + 1},{i % 2},class{i % 2},False,{i},A")
    (root / "meta" / "esc50.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.mark.parametrize("case", ["nan", "silent"])
def test_nan_or_silent_training_audio_is_named(tiny_config, tmp_path, capsys, case):
    rng = np.random.default_rng(0)

    def audio(i):
        if case == "silent":
            return np.zeros(8000, np.float32)
        x = (0.1 * rng.standard_normal(8000)).astype(np.float32)
        if i == 2:
            x[100] = np.nan
        return x

    data = _tiny_esc50(tmp_path / "esc50", audio)
    out = tmp_path / "run"
    assert main(["compress", "--config", str(tiny_config), "--dataset", "esc50", "--data-dir", str(data),
                 "--train-folds", "1", "--val-folds", "2", "-o", str(out)]) == 1
    err = _err(capsys)
    if case == "nan":
        assert "audio/1-2-A-0.wav: 1 audio sample(s) are NaN or infinite (first at sample 100)" in err
    else:
        assert "training clips all give the same log-mel value" in err and "the audio is silent" in err
    assert not out.exists()


def test_diverged_stage_leaves_no_empty_directories(tiny_config, tmp_path, capsys, monkeypatch):
    from esc2c.compress import pipeline
    from esc2c.errors import Esc2cError

    def diverge(*args, **kwargs):
        raise Esc2cError("teacher: loss became NaN at epoch 1 (diverged); lower the learning rate")

    monkeypatch.setattr(pipeline, "train", diverge)
    out = tmp_path / "run"
    assert main(["compress", "--config", str(tiny_config), "-o", str(out)]) == 1
    assert "diverged" in _err(capsys)
    assert not out.exists()                      # new run: nothing kept
    # an existing run keeps its files but loses the empty stage directory
    out.mkdir()
    (out / MARKER).write_text(json.dumps({"command": "compress"}))
    (out / "notes.md").write_text("kept")
    assert main(["compress", "--config", str(tiny_config), "-o", str(out)]) == 1
    capsys.readouterr()
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "notes.md"]
