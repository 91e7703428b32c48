"""`esc2c experiment`: the seed x fold grid on the synthetic set, resume, the cell lock, the statistics."""
import json
import math
import multiprocessing
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from esc2c.cli import main
from esc2c.compress import pipeline
from esc2c.compress.config import load_config
from esc2c.errors import Esc2cError
from esc2c.experiment import grid, stats
from esc2c.experiment.report import summarize

ROOT = Path(__file__).resolve().parents[2]

# synthetic clip i of every class lies in fold i % 5 + 1: 4 clips per class give one clip of each class in
# folds 1-4, so every cross-validation cell over folds 1-3 trains on 20 clips and tests on 10
TINY = {"synthetic_per_class": 4, "width": 1.0, "prune_ratio": 0.6, "ratio_sweep": [],
        "features": {"n_mels": 16, "clip_seconds": 1.0, "n_fft": 256, "win_length": 256, "hop_length": 128},
        "epochs_teacher": 1, "epochs_prune": 1, "epochs_qat_ta": 1, "epochs_qakd": 1, "batch_size": 16,
        "calib_batches": 1, "threads": 1, "holdout": 0.2, "cv_folds": [1, 2, 3]}


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    monkeypatch.setenv("ESC2C_CACHE", str(tmp_path / "cache"))

    def write(**changes):
        path = tmp_path / f"tiny{len(list(tmp_path.glob('tiny*.yaml')))}.yaml"
        path.write_text(yaml.safe_dump({**TINY, **changes}))
        return str(path)
    return write


# ---- statistics on known numbers ----------------------------------------------------------------------------
def test_paired_difference_interval_by_hand():
    a = {"s0-f1": 70.0, "s0-f2": 72.0, "s1-f1": 75.0, "only-a": 99.0}
    b = {"s0-f1": 68.0, "s0-f2": 71.0, "s1-f1": 71.0}
    d = stats.paired(a, b)
    # differences 2, 1, 4: mean 7/3, sample variance ((1/3)^2 + (4/3)^2 + (5/3)^2) / 2 = 7/3;
    # t_{0.975, 2} = 4.302653 (t table), half width = t * sqrt(7/3) / sqrt(3) = 4.302653 * sqrt(7) / 3
    assert d["n"] == 3 and d["values"] == {"s0-f1": 2.0, "s0-f2": 1.0, "s1-f1": 4.0}
    assert d["mean"] == pytest.approx(7 / 3) and d["std"] == pytest.approx(math.sqrt(7 / 3))
    half = 4.302653 * math.sqrt(7) / 3
    assert d["ci"] == pytest.approx([7 / 3 - half, 7 / 3 + half], abs=1e-5)
    assert stats.verdict(d) == "not shown"          # the interval [-1.46, 6.13] contains 0
    # differences 2, 3, 2.5, 3.5: mean 2.75, s = sqrt(1.25 / 3), t_{0.975, 3} = 3.182446
    up = stats.paired({i: v for i, v in enumerate([12, 13, 12.5, 13.5])}, {i: 10.0 for i in range(4)})
    half = 3.182446 * math.sqrt(1.25 / 3) / 2
    assert up["ci"] == pytest.approx([2.75 - half, 2.75 + half], abs=1e-5)
    assert stats.verdict(up) == "holds" and stats.verdict(up, margin=2.0) == "not shown"
    down = stats.paired({i: 10.0 for i in range(4)}, {i: v for i, v in enumerate([12, 13, 12.5, 13.5])})
    assert stats.verdict(down) == "reversed" and stats.verdict(down, margin=-5.0) == "holds"
    assert stats.verdict(stats.paired({"x": 1.0}, {"x": 0.0})) == "too few cells"
    assert stats.describe([61.1, 61.3])["std"] == pytest.approx(0.141421, abs=1e-6)


# ---- planning and bad input ---------------------------------------------------------------------------------------
def test_plan_and_cell_configs(tiny):
    base = load_config(tiny())
    assert grid.parse_test_folds("cv", base) == [1, 2, 3] and grid.parse_test_folds("3,1", base) == [3, 1]
    cells = grid.plan(grid.parse_seeds("0,1"), [1, 2, 3])
    assert [c.name for c in cells] == ["seed0-fold1", "seed0-fold2", "seed0-fold3",
                                       "seed1-fold1", "seed1-fold2", "seed1-fold3"]
    cfg = grid.cell_config(base, grid.Cell(1, 2), threads=3)
    assert (cfg.seed, cfg.train_folds, cfg.val_folds, cfg.threads) == (1, [1, 3], [2], 3)
    # without cv_folds the pool is the config's own train + val folds
    plain = load_config(tiny(cv_folds=[]), {"train_folds": [1, 2], "val_folds": [4]})
    assert grid.parse_test_folds("cv", plain) == [1, 2, 4]


@pytest.mark.parametrize("args, message", [
    (["--folds", "4"], "test folds must be distinct folds of the pool"),
    (["--folds", "1,x"], "--folds must be 'cv'"),
    (["--seeds", "0,0"], "--seeds must name distinct seeds"),
    (["--methods", "kd,dark"], "unknown KD baseline"),
    (["--jobs", "0"], "--jobs must be >= 1"),
])
def test_bad_experiment_input_is_named(tiny, tmp_path, capsys, args, message):
    out = tmp_path / "exp"
    assert main(["experiment", tiny(), "-o", str(out), *args]) == 1
    assert message in capsys.readouterr().err
    assert not (out / "cells").exists() or not any((out / "cells").iterdir())


def test_bad_experiment_configs(tiny, tmp_path, capsys):
    assert main(["experiment", tiny(holdout=0.0), "-o", str(tmp_path / "e")]) == 1
    assert "'holdout': an experiment needs holdout > 0" in capsys.readouterr().err
    assert main(["experiment", tiny(arch="vgg12"), "-o", str(tmp_path / "a")]) == 1     # before any cell starts
    assert "'arch': unknown architecture 'vgg12'" in capsys.readouterr().err and not (tmp_path / "a").exists()
    for change, message in (({"cv_folds": [2]}, "'cv_folds'"), ({"kd_baselines": ["hinton"]}, "'kd_baselines'")):
        with pytest.raises(Esc2cError, match=message):
            load_config(tiny(**change))
    assert main(["experiment", "-o", str(tmp_path / "e")]) == 1
    assert "needs CONFIG and -o DIR" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["experiment", "--summarize", str(tmp_path / "empty")]) == 1
    assert "not an experiment directory" in capsys.readouterr().err


def test_shipped_experiment_config():
    cfg = load_config(str(ROOT / "configs" / "experiment_us8k_cpu.yaml"))
    assert (cfg.dataset, cfg.arch, cfg.width, cfg.prune_ratio, cfg.holdout) == ("urbansound8k", "vgg11", 0.25, 0.97,
                                                                                  0.15)
    assert cfg.cv_folds == [1, 2, 3] and cfg.kd_baselines == ["kd", "fitnet", "mhkd", "alpkd"]
    assert (cfg.epochs_teacher, cfg.epochs_prune, cfg.epochs_qat_ta, cfg.epochs_qakd) == (20, 15, 2, 15)
    spec = cfg.feature_spec()
    assert (spec.n_mels, spec.clip_seconds) == (40, 4.0)


# ---- the lock -------------------------------------------------------------------------------------------------------
def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_lock_claim_stale_and_foreign(tmp_path):
    lock = tmp_path / "cells" / "seed0-fold1.lock"
    assert grid.try_claim(lock)
    assert grid.read_lock(lock)["pid"] == os.getpid()
    assert not grid.try_claim(lock)                  # held by a live process (this one)
    grid.release(lock)
    assert not lock.exists()
    # a dead process of this host: stale, reclaimed
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": _dead_pid()}))
    assert grid.try_claim(lock) and grid.read_lock(lock)["pid"] == os.getpid()
    grid.release(lock)
    # another host's lock is never taken; neither is one this process cannot read
    lock.write_text(json.dumps({"host": "elsewhere", "pid": _dead_pid()}))
    assert not grid.try_claim(lock) and grid.read_lock(lock)["host"] == "elsewhere"
    grid.release(lock)                               # not ours: stays
    assert lock.exists()
    lock.write_text("")
    assert not grid.try_claim(lock)
    assert not list(tmp_path.glob("cells/.*")) and not list(tmp_path.glob("cells/*.stale*"))


def _claim_all(args):
    folder, n = args
    return [i for i in range(n) if grid.try_claim(Path(folder) / f"c{i}.lock")]


def test_lock_is_taken_once_under_contention(tmp_path):
    # four processes race for the same 40 locks (some pre-seeded stale): each is won exactly once
    n = 40
    for i in range(0, n, 4):
        (tmp_path / f"c{i}.lock").write_text(json.dumps({"host": socket.gethostname(), "pid": _dead_pid()}))
    with multiprocessing.get_context("fork").Pool(4) as pool:
        won = pool.map(_claim_all, [(str(tmp_path), n)] * 4)
    counts = [sum(i in w for w in won) for i in range(n)]
    assert counts == [1] * n


# ---- the grid end to end ----------------------------------------------------------------------------------------
def _report(out, cell):
    return json.loads((out / "cells" / cell / "report.json").read_text())


def test_grid_cv_two_seeds_resume_and_summary(tiny, tmp_path, capsys, monkeypatch):
    cfg_path = tiny(kd_baselines=["kd", "fitnet", "mhkd", "alpkd"])
    out = tmp_path / "exp"
    assert main(["experiment", cfg_path, "--seeds", "0,1", "--folds", "cv", "-o", str(out)]) == 0
    log = capsys.readouterr().out
    names = [f"seed{s}-fold{f}" for s in (0, 1) for f in (1, 2, 3)]
    assert sorted(p.name for p in (out / "cells").iterdir() if p.is_dir()) == sorted(names)
    assert sorted(p.stem for p in (out / "cells").glob("*.log")) == sorted(names)      # each run's output
    for name in names:
        rep = _report(out, name)
        cell = grid.Cell.parse(name)
        assert rep["config"]["seed"] == cell.seed and rep["config"]["val_folds"] == [cell.fold]
        assert rep["config"]["train_folds"] == [f for f in (1, 2, 3) if f != cell.fold]
        assert rep["data"]["val_clips"] == 10 and rep["config"]["holdout"] == 0.2
        models = [r["model"] for r in rep["table"]]
        assert {"KD", "FitNet", "MHKD", "ALP-KD", "M_PoKD", "DirectKD", "M_QaKD"} <= set(models)
        assert all((out / "cells" / name / "stages" / s / "DONE").is_file() for s in ("kd", "fitnet", "mhkd", "alpkd"))
    assert not list((out / "cells").glob("*.lock"))
    exp = json.loads((out / "experiment.json").read_text())
    rows = {r["model"]: r for r in exp["rows"]}
    assert [r["model"] for r in exp["rows"]][:7] == ["M_Ori", "M_Pru", "M_PoKD", "KD", "FitNet", "MHKD", "ALP-KD"]
    assert rows["M_Ori"]["n"] == 6 and "M_QaKD integer" in rows
    for name in names:                               # the summary holds each cell's own figures
        rep = _report(out, name)
        assert rows["M_Ori"]["values"][name] == pytest.approx(100 * rep["table"][0]["val_acc"])
        assert rows["M_QaKD integer"]["values"][name] == pytest.approx(100 * rep["deployed"]["int_val_acc"])
    diffs = {d["name"]: d for d in exp["differences"]}
    assert {"PoKD - M_Pru", "PoKD - KD", "PoKD - FitNet", "PoKD - MHKD", "PoKD - ALP-KD", "QaKD - DirectKD",
            "M_QaKD - M_Ori"} <= set(diffs)
    d = diffs["PoKD - KD"]
    assert d["n"] == 6 and d["values"] == {n: pytest.approx(rows["M_PoKD"]["values"][n] - rows["KD"]["values"][n])
                                           for n in names}
    assert d["verdict"] == stats.verdict(stats.paired(rows["M_PoKD"]["values"], rows["KD"]["values"]))
    md = (out / "experiment.md").read_text()
    assert "| PoKD - KD |" in md and "95 % interval" in md and (out / "experiment.png").stat().st_size > 0
    assert "PoKD - KD:" in log and "claim 'PoKD beats vanilla KD'" in log

    # a second run trains nothing: the finished cells are skipped, not even opened by the pipeline
    def refuse(*a, **k):
        raise AssertionError("a finished cell was run again")
    monkeypatch.setattr(pipeline, "run", refuse)
    before = (out / "experiment.json").read_text()
    assert main(["experiment", cfg_path, "--seeds", "0,1", "--folds", "cv", "-o", str(out)]) == 0
    assert "6 of 6 cells finished already" in capsys.readouterr().out
    assert json.loads((out / "experiment.json").read_text())["rows"] == json.loads(before)["rows"]
    monkeypatch.undo()

    # an interrupted cell resumes through the stage runner: only its unfinished stage trains
    monkeypatch.setenv("ESC2C_CACHE", str(tmp_path / "cache"))
    (out / "cells" / "seed1-fold3" / "report.json").unlink()
    for f in (out / "cells" / "seed1-fold3" / "stages" / "alpkd").iterdir():
        f.unlink()
    trained = []
    real_train = pipeline.train

    def spy(model, tr, sel, loss, *a, **k):
        trained.append(loss)
        return real_train(model, tr, sel, loss, *a, **k)
    monkeypatch.setattr(pipeline, "train", spy)
    assert main(["experiment", cfg_path, "--seeds", "0,1", "--folds", "cv", "-o", str(out)]) == 0
    assert trained == ["alpkd"] and (out / "cells" / "seed1-fold3" / "report.json").is_file()
    capsys.readouterr()

    # a different config is refused in the same directory; --summarize rebuilds without training
    assert main(["experiment", tiny(kd_baselines=["kd"]), "--seeds", "0", "-o", str(out)]) == 1
    assert "started with a different config (field 'kd_baselines'" in capsys.readouterr().err
    (out / "experiment.json").unlink()
    assert main(["experiment", "--summarize", str(out)]) == 0
    assert json.loads((out / "experiment.json").read_text())["rows"][0]["n"] == 6


def test_grid_skips_cells_held_elsewhere(tiny, tmp_path, capsys):
    cfg_path = tiny()
    out = tmp_path / "exp"
    lock = out / "cells" / "seed0-fold2.lock"
    lock.parent.mkdir(parents=True)
    lock.write_text(json.dumps({"host": "elsewhere", "pid": 1234}))
    (out / "cells" / "seed0-fold2").mkdir()
    assert main(["experiment", cfg_path, "--seeds", "0", "--folds", "1,2", "-o", str(out)]) == 0
    log = capsys.readouterr().out
    assert "[seed0-fold2] held by elsewhere pid 1234: skipped" in log
    assert (out / "cells" / "seed0-fold1" / "report.json").is_file()
    assert not (out / "cells" / "seed0-fold2" / "report.json").exists() and lock.is_file()
    exp = summarize(out)
    assert list(exp["cells"]) == ["seed0-fold1"] and exp["unfinished"][0]["lock"]["host"] == "elsewhere"
    assert "held by elsewhere pid 1234" in (out / "experiment.md").read_text()


def test_grid_parallel_worker_processes(tiny, tmp_path, capsys):
    out = tmp_path / "exp"
    assert main(["experiment", tiny(), "--seeds", "0", "--folds", "1,2", "--jobs", "2", "--threads", "2",
                 "-o", str(out)]) == 0
    log = capsys.readouterr().out
    assert "2 worker processes, 1 torch thread(s) each" in log
    for name in ("seed0-fold1", "seed0-fold2"):
        rep = _report(out, name)
        assert rep["config"]["threads"] == 1
        head = (out / "cells" / f"{name}.log").read_text().splitlines()[0]
        assert f"pid {os.getpid()}" not in head      # run by a worker process, not this one
    assert not list((out / "cells").glob("*.lock"))
    assert json.loads((out / "experiment.json").read_text())["rows"][0]["n"] == 2


def test_grid_cell_runs_data_parallel_under_torchrun(tiny, tmp_path, capsys):
    """--cell-procs 2: each cell is one 2-process torchrun (gloo) compress, its stages trained data-parallel."""
    out = tmp_path / "exp"
    assert main(["experiment", tiny(), "--seeds", "0", "--folds", "1", "--cell-procs", "2", "--threads", "2",
                 "-o", str(out)]) == 0
    capsys.readouterr()
    rep = _report(out, "seed0-fold1")
    assert rep["config"]["val_folds"] == [1] and rep["config"]["threads"] == 1
    text = (out / "cells" / "seed0-fold1.log").read_text()
    assert "torchrun x 2" in text and "data parallel: 2 processes (gloo)" in text
    assert (out / "cells" / "seed0-fold1.yaml").is_file() and not list((out / "cells").glob("*.lock"))
    assert json.loads((out / "experiment.json").read_text())["rows"][0]["n"] == 1
    assert main(["experiment", tiny(), "--seeds", "0", "--folds", "1", "--cell-procs", "0", "-o", str(out)]) == 1
    assert "--cell-procs must be >= 1" in capsys.readouterr().err


def _torchrun_experiment(args, tmp_path, timeout=600):
    env = dict(os.environ, ESC2C_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "esc2c", "experiment", *args]
    return subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=timeout)


def test_grid_spread_over_torchrun_ranks(tiny, tmp_path):
    """torchrun x 2 of `esc2c experiment`: both ranks run cells (one-process compress runs that do not join the
    launch's group), each cell once, and rank 0 alone writes the summary."""
    out = tmp_path / "exp"
    r = _torchrun_experiment([tiny(), "--seeds", "0,1", "--folds", "1,2", "-o", str(out)], tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    names = [f"seed{s}-fold{f}" for s in (0, 1) for f in (1, 2)]
    pids = set()
    for name in names:
        rep = _report(out, name)
        assert rep["config"]["seed"] == grid.Cell.parse(name).seed
        text = (out / "cells" / f"{name}.log").read_text()
        assert text.count("\n--- ") == 0 and "data parallel" not in text      # run once, in one process
        pids.add(text.splitlines()[0].split(" pid ")[1].split()[0])
    assert len(pids) == 2                            # the two ranks' worker processes shared the cells
    assert "[rank 0/2]" in r.stdout and "[rank 1/2]" in r.stdout
    assert r.stdout.count("experiment: 4 cells") == 1 and r.stdout.count(f"wrote {out}/experiment.json") == 1
    assert not list((out / "cells").glob("*.lock"))
    assert json.loads((out / "experiment.json").read_text())["rows"][0]["n"] == 4


def test_grid_torchrun_rank_failure_is_reported_by_every_rank(tiny, tmp_path):
    out = tmp_path / "exp"
    r = _torchrun_experiment([tiny(dataset="urbansound8k"), "--data-dir", str(tmp_path / "missing"),
                              "--seeds", "0", "--folds", "1,2", "-o", str(out)], tmp_path)
    assert r.returncode != 0
    assert r.stderr.count("2 of 2 ranks failed") == 2, r.stderr[-3000:]
    assert "Traceback" not in r.stdout and not (out / "experiment.json").exists()
    assert not list((out / "cells").glob("*.lock"))


def test_rank_child_environment(monkeypatch):
    from esc2c.experiment import ranks

    for k, v in {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "MASTER_ADDR": "n0", "MASTER_PORT": "29500",
                 "TORCHELASTIC_RUN_ID": "x", "CUDA_VISIBLE_DEVICES": "4,5,6,7", "KEEP": "1"}.items():
        monkeypatch.setenv(k, v)
    launch = ranks.launched()
    assert launch == ranks.Launch(3, 4, 1)
    env = ranks.child_environment(launch, "cpu", 1)
    assert env["KEEP"] == "1" and not {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT",
                                       "TORCHELASTIC_RUN_ID"} & set(env)
    assert env["CUDA_VISIBLE_DEVICES"] == "4,5,6,7"
    assert ranks.child_environment(launch, "cuda", 1)["CUDA_VISIBLE_DEVICES"] == "5"   # its own GPU
    assert ranks.child_environment(launch, "cuda", 2)["CUDA_VISIBLE_DEVICES"] == "4,5,6,7"
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(Esc2cError, match="RANK=4 is outside WORLD_SIZE=4"):
        ranks.launched()
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert ranks.launched() is None


def test_grid_with_last_epoch_selection(tiny, tmp_path, capsys):
    """epoch_selection: last - every stage keeps its final epoch, and the summary says so; a parameter budget
    (target_params) is reported as the budget, not as the unused prune ratio."""
    out = tmp_path / "exp"
    assert main(["experiment", tiny(epoch_selection="last", epochs_teacher=2, epochs_prune=2, target_params=20000),
                 "--seeds", "0", "--folds", "1", "-o", str(out)]) == 0
    capsys.readouterr()
    rep = _report(out, "seed0-fold1")
    assert rep["config"]["epoch_selection"] == "last"
    teacher = json.loads((out / "cells" / "seed0-fold1" / "stages" / "teacher" / "DONE").read_text())["metrics"]
    assert teacher["best_epoch"] == 2 and teacher["select_acc"] == teacher["history"][-1]["val_acc"]
    md = (out / "experiment.md").read_text()
    assert "keeps every stage's last epoch" in md
    assert "target 20,000 kept parameters (a budget, not a ratio" in md and "prune ratio 0.6" not in md


def test_against_another_experiment(tiny, tmp_path, capsys):
    """--against DIR: every model minus itself in another experiment, paired over the cells both finished,
    with the config fields that differ; a DIR that is not an experiment is refused before anything trains."""
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["experiment", tiny(), "--seeds", "0", "--folds", "1,2", "-o", str(a)]) == 0
    cfg_b = tiny(gain_db=6.0, eq_db=3.0)
    assert main(["experiment", cfg_b, "--seeds", "0", "--folds", "1", "-o", str(b),
                 "--against", str(tmp_path / "x")]) == 1
    assert "not an experiment directory" in capsys.readouterr().err and not (b / "cells").exists()
    assert main(["experiment", cfg_b, "--seeds", "0", "--folds", "1", "-o", str(b), "--against", str(a)]) == 0
    log = capsys.readouterr().out
    exp = json.loads((b / "experiment.json").read_text())
    ra = {r["model"]: r for r in json.loads((a / "experiment.json").read_text())["rows"]}
    rb = {r["model"]: r for r in exp["rows"]}
    vs = exp["against"]
    assert vs["dir"] == str(a) and vs["fields"] == {"eq_db": [3.0, 0.0], "gain_db": [6.0, 0.0]}
    rows = {r["model"]: r for r in vs["rows"]}
    assert set(rows) == set(rb) and "M_QaKD integer" in rows
    for m, r in rows.items():                        # only the common cell, seed0-fold1
        assert r["n"] == 1 and r["values"] == {"seed0-fold1": pytest.approx(rb[m]["values"]["seed0-fold1"]
                                                                            - ra[m]["values"]["seed0-fold1"])}
        assert r["verdict"] == "too few cells"
    assert "against " + str(a) in log and "gain_db 6.0 (there 0.0)" in log
    md = (b / "experiment.md").read_text()
    assert f"## Against {a}" in md and "`gain_db` 6.0 here, 0.0 there" in md
    assert main(["experiment", "--summarize", str(a), "--against", str(b)]) == 0    # the other way round
    assert json.loads((a / "experiment.json").read_text())["against"]["fields"]["gain_db"] == [0.0, 6.0]
    # a grid written before a field existed had its default there
    doc = json.loads((a / "grid.json").read_text())
    for k in ("gain_db", "eq_db", "eq_points"):
        del doc["config"][k]
    (a / "grid.json").write_text(json.dumps(doc))
    assert main(["experiment", "--summarize", str(b), "--against", str(a)]) == 0
    assert json.loads((b / "experiment.json").read_text())["against"]["fields"] == vs["fields"]
