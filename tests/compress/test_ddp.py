"""Data-parallel ``esc2c compress`` under torchrun: 2 CPU processes (gloo) against the one-process run.

What must be bit-identical between 1 and 2 processes with the same global batch: the epoch order and the
augmented global batch each rank slices (inputs and targets), the weights on every rank after every step
(rank 0 == rank 1), the epoch each stage keeps. What may differ by float summation order (gradients summed
over ranks, BatchNorm statistics of the global batch summed in float64): the weights, by at most 1e-5 after
the short float training here, and the INT8 codes by at most 1 step on at most 1 % of them.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.distributed as dist
import yaml
from onnx import numpy_helper

import _ddp_worker
from esc2c.cli import main
from esc2c.compress import distributed
from esc2c.errors import Esc2cError
from esc2c.fsutil import MARKER

ROOT = Path(__file__).resolve().parents[2]
LAUNCH_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")

TINY = {"synthetic_per_class": 6, "width": 0.5, "prune_ratio": 0.6, "ratio_sweep": [],
        "features": {"n_mels": 16, "clip_seconds": 1.0, "n_fft": 256, "win_length": 256, "hop_length": 128},
        "epochs_teacher": 4, "epochs_prune": 1, "epochs_qat_ta": 1, "epochs_qakd": 1, "batch_size": 16,
        "calib_batches": 2, "threads": 1, "baselines": False}
STAGES = ["teacher", "prune", "finetune", "pokd", "qat_ta", "qakd"]


@pytest.fixture
def plain_env(monkeypatch):
    for v in LAUNCH_VARS:
        monkeypatch.delenv(v, raising=False)


def _env(cache: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_VARS}
    env.update(PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]), OMP_NUM_THREADS="1",
               ESC2C_CACHE=str(cache), ESC2C_DIST_TIMEOUT="300")
    return env


def _torchrun(n: int, args: list[str]) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={n}", *args]


def test_share_splits_every_row_once():
    for n in range(0, 40):
        for world in range(1, 6):
            parts = [distributed.share(n, world, r) for r in range(world)]
            assert parts[0][0] == 0 and parts[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))          # contiguous, in rank order
            sizes = [hi - lo for lo, hi in parts]
            assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


def test_one_process_has_no_process_group(plain_env):
    env = distributed.setup("cpu")
    assert (env.rank, env.world, env.backend, env.owned) == (0, 1, None, False)
    assert not dist.is_initialized() and not distributed.active()
    obj = {"a": 1}
    assert distributed.broadcast_object(obj) is obj and distributed.on_main(lambda: 7) == 7
    distributed.shutdown(env)


@pytest.mark.parametrize("env, message", [
    ({"WORLD_SIZE": "two"}, "WORLD_SIZE='two' is not an integer"),
    ({"WORLD_SIZE": "2", "RANK": "5"}, "RANK=5 is outside WORLD_SIZE=2"),
    ({"WORLD_SIZE": "2", "RANK": "0", "ESC2C_DIST_TIMEOUT": "soon"}, "ESC2C_DIST_TIMEOUT='soon'"),
    ({"WORLD_SIZE": "2", "RANK": "0", "ESC2C_DIST_TIMEOUT": "0"}, "must be > 0"),
])
def test_bad_launch_environment_is_named(plain_env, monkeypatch, env, message):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(Esc2cError, match=message):
        distributed.setup("cpu")
    assert not dist.is_initialized()


def test_two_processes_train_like_one(tmp_path, plain_env):
    """train() under torchrun: the same augmented global batch split over the ranks (the last batch leaves
    rank 1 without a row), identical weights on both ranks, and weights within float rounding of one process;
    only rank 0 writes the checkpoint."""
    out = tmp_path / "ddp"
    out.mkdir()
    p = subprocess.run(_torchrun(2, [str(ROOT / "tests" / "_ddp_worker.py"), str(out)]), env=_env(tmp_path),
                       capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stderr[-3000:]
    r0, r1 = (torch.load(out / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    assert (r0["world"], r0["backend"]) == (2, "gloo")
    ref = _ddp_worker.job()
    assert len(ref["inputs"]) == len(r0["inputs"]) == 6
    assert [len(b) for b in r1["inputs"]][-1] == 0                      # 61 = 5 * 12 + 1: rank 1 idles
    for full, a, b in zip(ref["inputs"], r0["inputs"], r1["inputs"]):
        assert torch.equal(torch.cat([a, b]), full)                     # bit-identical augmented batches
    for key in ("float", "qat", "ce"):
        assert all(torch.equal(r0[key][k], r1[key][k]) for k in r0[key])       # ranks agree exactly
        assert r0[key].keys() == ref[key].keys()
    for key in ("float", "ce"):
        diff = max(float((r0[key][k].double() - ref[key][k].double()).abs().max())
                   for k in ref[key] if ref[key][k].is_floating_point())
        assert diff <= 1e-5, key
    assert r0["bn_classes"] == ref["bn_classes"] and "SyncBatchNorm2d" not in r0["bn_classes"]
    for key in ("float_history", "qat_history"):
        for a, b in zip(r0[key], ref[key]):
            assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
            assert abs(a["val_acc"] - b["val_acc"]) <= 1 / 30 + 1e-9
    assert sorted(f.name for f in out.iterdir()) == ["float_last.pt", "rank0.pt", "rank1.pt"]


def _int8(path) -> dict:
    return {i.name: numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer
            if i.data_type == onnx.TensorProto.INT8}


def _worker_pids(parent: int) -> dict[int, int]:
    """{rank: pid} of the worker processes a torchrun process started (from /proc)."""
    found = {}
    for task in Path(f"/proc/{parent}/task").iterdir():
        for pid in (task / "children").read_text().split():
            try:
                env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            for e in env:
                if e.startswith(b"RANK="):
                    found[int(e[5:])] = int(pid)
    return found


def _kill_rank_mid_teacher(cmd: list[str], env: dict, out: Path, rank: int) -> None:
    """Start ``cmd``; once the teacher has a finished epoch in its checkpoint, SIGKILL one rank (torchrun then
    stops the others)."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    ck = out / "stages" / "teacher" / "last.pt"
    try:
        deadline = time.time() + 180
        while not ck.exists():
            assert proc.poll() is None and time.time() < deadline, "the run ended before the teacher's first epoch"
            time.sleep(0.05)
        os.kill(_worker_pids(proc.pid)[rank], signal.SIGKILL)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode != 0, err[-2000:]
    assert ck.exists() and not (out / "stages" / "teacher" / "DONE").exists()       # killed mid-stage


def _check_one_set_of_outputs(out: Path) -> None:
    stages = out / "stages"
    assert sorted(p.name for p in stages.iterdir()) == sorted(STAGES)
    for s in STAGES:
        assert sorted(p.name for p in (stages / s).iterdir()) == ["DONE", "model.pt"], s   # no last.pt, no temp
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == [MARKER]   # no temporary files


@pytest.fixture
def tiny(tmp_path, monkeypatch, plain_env):
    monkeypatch.setenv("ESC2C_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


def _reference(tiny: Path, out: Path, capsys) -> Path:
    assert main(["compress", "--config", str(tiny), "-o", str(out)]) == 0
    capsys.readouterr()
    return out


def _compare(one: Path, two: Path) -> None:
    rep1, rep2 = (json.loads((d / "report.json").read_text()) for d in (one, two))
    t1 = torch.load(one / "stages" / "teacher" / "model.pt", weights_only=False)
    t2 = torch.load(two / "stages" / "teacher" / "model.pt", weights_only=False)
    assert t1["metrics"]["best_epoch"] == t2["metrics"]["best_epoch"]
    assert max(float((t1["state_dict"][k].double() - t2["state_dict"][k].double()).abs().max())
               for k in t1["state_dict"]) <= 1e-5
    a, b = _int8(one / "model.onnx"), _int8(two / "model.onnx")
    assert a.keys() == b.keys()
    total = sum(v.size for v in a.values())
    same = sum(int((a[k] == b[k]).sum()) for k in a)
    assert all(np.abs(a[k].astype(int) - b[k].astype(int)).max() <= 1 for k in a) and same >= 0.99 * total
    n_val = rep1["data"]["val_clips"]
    assert [r["model"] for r in rep1["table"]] == [r["model"] for r in rep2["table"]]
    for r1, r2 in zip(rep1["table"], rep2["table"]):       # within one validation clip
        assert abs(r1["val_acc"] - r2["val_acc"]) <= 1 / n_val + 1e-9, r1["model"]


def test_torchrun_compress_resumes_after_a_kill_and_matches_one_process(tiny, tmp_path, capsys):
    two = tmp_path / "two"
    cmd = _torchrun(2, ["-m", "esc2c", "compress", "--config", str(tiny), "-o", str(two)])
    env = _env(tmp_path / "cache")
    _kill_rank_mid_teacher(cmd, env, two, rank=1)
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "[teacher] resuming" in p.stdout and "data parallel: 2 processes (gloo)" in p.stdout
    assert p.stdout.count("| M_QaKD |") == 1                           # rank 0 alone prints the table
    _check_one_set_of_outputs(two)
    _compare(_reference(tiny, tmp_path / "one", capsys), two)


@pytest.mark.slow
def test_resume_with_a_different_number_of_processes(tiny, tmp_path, capsys):
    """Killed with 2 processes, resumed with 1; killed with 1 (under torchrun), resumed with 2."""
    env = _env(tmp_path / "cache")
    ref = tmp_path / "one"
    _reference(tiny, ref, capsys)
    a = tmp_path / "two_then_one"
    _kill_rank_mid_teacher(_torchrun(2, ["-m", "esc2c", "compress", "--config", str(tiny), "-o", str(a)]), env, a, 1)
    assert main(["compress", "--config", str(tiny), "-o", str(a)]) == 0
    assert "[teacher] resuming" in capsys.readouterr().out
    _check_one_set_of_outputs(a)
    _compare(ref, a)
    b = tmp_path / "one_then_two"
    cmd1 = _torchrun(1, ["-m", "esc2c", "compress", "--config", str(tiny), "-o", str(b)])
    _kill_rank_mid_teacher(cmd1, env, b, 0)
    p = subprocess.run(_torchrun(2, ["-m", "esc2c", "compress", "--config", str(tiny), "-o", str(b)]), env=env,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0 and "[teacher] resuming" in p.stdout, p.stderr[-3000:]
    _check_one_set_of_outputs(b)
    _compare(ref, b)
