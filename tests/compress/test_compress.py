"""`esc2c compress`: configuration, the end-to-end run on a tiny synthetic set, resume, determinism."""
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml
from onnx import numpy_helper

from esc2c.cli import main
from esc2c.compress.config import CompressConfig, load_config, parse_folds
from esc2c.compress.train import TrainConfig
from esc2c.errors import Esc2cError
from esc2c.quant import export

ROOT = Path(__file__).resolve().parents[2]

TINY = {"synthetic_per_class": 6, "width": 0.5, "prune_ratio": 0.6, "ratio_sweep": [0.3],
        "features": {"n_mels": 16, "clip_seconds": 1.0, "n_fft": 256, "win_length": 256, "hop_length": 128},
        "epochs_teacher": 2, "epochs_prune": 1, "epochs_qat_ta": 1, "epochs_qakd": 1, "batch_size": 16,
        "calib_batches": 2, "threads": 1}


@pytest.fixture
def tiny_config(tmp_path, monkeypatch):
    monkeypatch.setenv("ESC2C_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


def test_shipped_paper_configs_load():
    paths = sorted((ROOT / "configs").glob("*.yaml"))
    names = {p.stem for p in paths}
    assert {"vgg11_esc50", "vgg11_urbansound8k", "resnet18_esc50", "resnet18_urbansound8k"} <= names
    for p in paths:
        cfg = load_config(str(p))
        if p.stem.split("_")[0] in ("vgg11", "resnet18"):
            assert (cfg.lr, cfg.batch_size, cfg.weight_decay, cfg.prune_ratio) == (1e-3, 64, 5e-4, 0.97)
            assert (cfg.epochs_teacher, cfg.epochs_prune, cfg.epochs_qat_ta, cfg.epochs_qakd) == (100, 50, 5, 50)


def test_config_file_and_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("arch: resnet18\nepochs_qakd: 3\nfeatures: {n_mels: 40}\n")
    cfg = load_config(str(p), {"epochs_qakd": 7, "seed": None, "train_folds": [1, 2], "val_folds": [3]})
    assert cfg.arch == "resnet18" and cfg.epochs_qakd == 7 and cfg.seed == 0
    spec = cfg.feature_spec()       # the file's features over the dataset's defaults
    assert spec.n_mels == 40 and spec.hop_length == CompressConfig().feature_spec().hop_length
    t = tmp_path / "c.toml"
    t.write_text('arch = "vgg11"\nprune_ratio = 0.9\n')
    assert load_config(str(t)).arch == "vgg11"
    assert parse_folds("1, 2,3") == [1, 2, 3]


@pytest.mark.parametrize("text, message", [
    ("archh: small\n", "unknown config field 'archh'"),
    ("epochs_qakd: five\n", "field 'epochs_qakd' has the wrong type"),
    ("prune_ratio: 1.5\n", "'prune_ratio': must be in"),
    ("arch: vgg12\n", "'arch': unknown architecture 'vgg12'"),
    ("train_folds: [1, 2]\nval_folds: [2]\n", "also training folds"),
    ("dataset: esc50\n", "needs --data-dir"),
    ("rounding: nearest\n", "'rounding'"),
    ("features: {n_mels: -3}\n", "n_mels"),
    (": : :\n", "not a valid YAML file"),
])
def test_bad_config_is_named(tmp_path, text, message):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(Esc2cError, match=message):
        load_config(str(p))


def test_cli_bad_input_fails_cleanly(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["compress", "--config", str(tmp_path / "missing.yaml"), "-o", str(out)]) == 1
    assert "missing.yaml: config file not found" in capsys.readouterr().err
    assert main(["compress", "--train-folds", "1,x", "-o", str(out)]) == 1
    assert "folds must be comma-separated" in capsys.readouterr().err
    assert not out.exists()


def _int8_weights(path) -> dict:
    m = onnx.load(str(path))
    return {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}


def test_compress_end_to_end_resume_and_report(tiny_config, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["compress", "--config", str(tiny_config), "-o", str(out)]) == 0
    log = capsys.readouterr().out
    for f in ("model.onnx", "report.json", "report.md", "acc_stages.png", "acc_vs_ratio.png", "widths.png",
              "quant_debug.png"):
        assert (out / f).is_file(), f
    rep = json.loads((out / "report.json").read_text())
    models = [r["model"] for r in rep["table"]]
    assert models == ["M_Ori", "M_Pru", "M_PoKD", "M_Qua (PTQ)", "M_OriQ", "M_Qua", "DirectKD", "M_QaKD"]
    d = rep["deployed"]
    assert 0.5 < d["compression"] < 0.7 and d["int8_bytes"] > 0
    assert d["params"] < rep["table"][0]["params"]
    # the exported model is the deployed M_QaKD: onnxruntime, integer program and fake quant agree closely
    assert abs(d["onnx_val_acc"] - d["int_val_acc"]) <= 0.05
    m = onnx.load(str(out / "model.onnx"))
    meta = export.metadata(m)
    assert json.loads(meta["esc2c.class_names"]) == rep["class_names"]
    assert json.loads(meta["esc2c.feature_spec"])["n_mels"] == 16 and meta["esc2c.rounding"] == "double"
    assert not any(n.name.startswith("aux") for n in m.graph.node)
    assert "| M_QaKD |" in log and "M_QaKD" in (out / "report.md").read_text()
    _check_quant_debug(rep, out, capsys)
    # a second run resumes: every stage is loaded, the exported weights are the same
    before = _int8_weights(out / "model.onnx")
    assert main(["compress", "--config", str(tiny_config), "-o", str(out)]) == 0
    log2 = capsys.readouterr().out
    assert log2.count("done already") == 8 and "running" not in log2
    after = _int8_weights(out / "model.onnx")
    assert all(np.array_equal(before[k], after[k]) for k in before)
    # a finished stage is never mixed with different settings
    assert main(["compress", "--config", str(tiny_config), "--epochs-teacher", "3", "-o", str(out)]) == 1
    assert "different stage_config" in capsys.readouterr().err


def _check_quant_debug(rep, out, capsys):
    """The report's per-layer quantization debugger, and `esc2c qdebug` on the run gives the same table."""
    qd = rep["quant_debug"]
    program = export.program_from_onnx(onnx.load(str(out / "model.onnx")))
    assert [r["name"] for r in qd["layers"]] == ["input"] + [L["output"] for L in program["layers"]]
    assert qd["n_inputs"] == rep["data"]["val_clips"] and qd["worst_layer"] in {r["name"] for r in qd["layers"]}
    assert all(r["fq_agree"] > 0.8 for r in qd["layers"])
    assert "## Where the INT8 model loses accuracy" in (out / "report.md").read_text()
    capsys.readouterr()
    assert main(["qdebug", str(out), "-o", str(out / "qdebug")]) == 0
    assert json.loads((out / "qdebug" / "quant_debug.json").read_text())["layers"] == qd["layers"]
    assert "| logits | fc |" in capsys.readouterr().out


def test_same_seed_same_integer_weights(tiny_config, tmp_path, capsys):
    runs = []
    for name in ("a", "b"):
        out = tmp_path / name
        assert main(["compress", "--config", str(tiny_config), "--no-baselines", "-o", str(out)]) == 0
        runs.append(_int8_weights(out / "model.onnx"))
    a, b = runs
    assert set(a) == set(b)
    int8 = [k for k in a if a[k].dtype == np.int8 and a[k].size > 1]
    assert len(int8) >= 5
    for k in a:
        assert np.array_equal(a[k], b[k]), k
    capsys.readouterr()


def test_teacher_assistant_trains_at_qat_ta_lr(tiny_config, tmp_path, monkeypatch):
    """The INT8 teacher assistant trains at qat_ta_lr (BN is folded there: the float lr wrecks the trained
    teacher it starts from); every other stage, the INT8 students included, at lr."""
    from esc2c.compress import pipeline, qakd

    seen = []

    def spy(real, kind):
        def call(*a, **kw):
            cfg = kw["cfg"] if "cfg" in kw else next(v for v in a if isinstance(v, TrainConfig))
            seen.append((kind, cfg.lr))
            return real(*a, **kw)
        return call

    monkeypatch.setattr(pipeline, "train", spy(pipeline.train, "float"))
    for name in ("qakd", "qat_ce", "direct_kd"):
        monkeypatch.setattr(qakd, name, spy(getattr(qakd, name), "int8"))
    monkeypatch.setattr(qakd, "teacher_assistant", spy(qakd.teacher_assistant, "ta"))
    cfg = load_config(str(tiny_config), {"lr": 2e-3, "qat_ta_lr": 3e-4})
    pipeline.run(cfg, tmp_path / "run", log=lambda s: None, progress=False)
    # the pruned FP32 students (M_Pru, M_PoKD) at student_lr_factor x lr
    assert sorted(seen) == [("float", 2e-3)] + [("float", 2e-3 * cfg.student_lr_factor)] * 2 + \
        [("int8", 2e-3)] * 3 + [("ta", 3e-4)]
    assert CompressConfig().qat_ta_lr < CompressConfig().lr
    with pytest.raises(Esc2cError, match="'qat_ta_lr'"):
        load_config(None, {"qat_ta_lr": 0.0})


def test_weight_average_runs_every_stage_and_exports_what_it_kept(tiny_config, tmp_path, capsys):
    """--ema-decay: every stage (float and QAT) scores and keeps its weights' moving average; the exported
    model is the kept M_QaKD (onnxruntime and the integer program agree on it) and the run says so; the
    setting is part of each stage's record, so the run does not resume without it."""
    out = tmp_path / "ema"
    assert main(["compress", "--config", str(tiny_config), "--no-baselines", "-o", str(out),
                 "--ema-decay", "0.9"]) == 0
    assert "of its weights' moving average (decay 0.9)" in capsys.readouterr().out
    d = json.loads((out / "report.json").read_text())["deployed"]
    assert abs(d["onnx_val_acc"] - d["int_val_acc"]) <= 0.05
    assert main(["compress", "--config", str(tiny_config), "--no-baselines", "-o", str(out)]) == 1
    assert "different stage_config" in capsys.readouterr().err
