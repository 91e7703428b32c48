"""What emit wrote is what verify reads: the exact IR round trip (model.ir.json + model.ir.npz), verify
without any recompilation, the rounding from the model's metadata, and the pass runner's invariant checks."""
import json
import shutil

import numpy as np
import onnx
import pytest

from _compiler_models import build
from esc2c.cli import main as cli_main
from esc2c.compiler import driver, importer, passes
from esc2c.compiler.driver import compile_model
from esc2c.compiler.emit import emit
from esc2c.compiler.lower_onnx import lower_to_onnx
from esc2c.compiler.passes.fuse_conv_pool import fuse_conv_pool
from esc2c.compiler.project import IR_ARRAYS, Project, load_graph, save_graph
from esc2c.compiler.verify import verify
from esc2c.contract import META_ROUNDING, TFLITE
from esc2c.errors import Esc2cError

needs_cmake = pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not installed")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("project")
    return {k: build(k, tmp) for k in ("vgg", "resnet")}


def _same_graph(a, b):
    assert a.to_dict() == b.to_dict()
    assert [t.__dict__ for t in a.tensors.values()] == [t.__dict__ for t in b.tensors.values()]
    for x, y in zip(a.ops, b.ops, strict=True):
        assert x.attrs == y.attrs  # tuples stay tuples: (1, 1) != [1, 1]
        for f in ("weights", "weight_scales", "bias", "multiplier", "shift", "avg_mult", "avg_shift"):
            u, v = getattr(x, f), getattr(y, f)
            assert (u is None) == (v is None), f
            if u is not None:
                assert u.dtype == v.dtype and np.array_equal(u, v), (x.name, f)
        assert x.act == y.act and x.add == y.add and x.kernel == y.kernel and x.scratch == y.scratch


@pytest.mark.parametrize("kind,fuse", [("vgg", "all"), ("vgg", "none"), ("resnet", "auto")])
def test_ir_round_trip_is_exact(models, tmp_path, kind, fuse):
    g = compile_model(models[kind], fuse=fuse)
    save_graph(g, tmp_path)
    back = load_graph(tmp_path)
    _same_graph(g, back)
    for mode in ("double", "single"):  # the back ends see the same graph: same integer ONNX bytes
        assert lower_to_onnx(back, mode).SerializeToString() == lower_to_onnx(g, mode).SerializeToString()


@needs_cmake
def test_verify_reads_the_emitted_ir_and_never_compiles(models, tmp_path, monkeypatch):
    r = emit(models["vgg"], tmp_path / "out", n_vectors=2, fuse="all", contract=TFLITE)
    meta = json.loads((r.out / "esc2c.json").read_text())
    assert meta["options"] == {"kernels": "fast", "fuse": "all", "flash_budget": None, "contract": "tflite"}
    assert meta["rounding_source"] == "command line contract, default rounding"

    def no_compile(*a, **k):
        raise AssertionError("verify compiled the model again")

    monkeypatch.setattr(driver, "load_ir", no_compile)
    monkeypatch.setattr(importer, "load_ir", no_compile)
    monkeypatch.setattr(passes, "run_passes", no_compile)
    rep = verify(r.out, n=3, n_features=0)
    assert rep.ok, rep.text()
    assert rep.elements_compared == 3 * sum(r.graph.tensors[op.output].size for op in r.graph.layer_ops())
    # the IR file is what is checked: one weight changed there (not in the C) makes the first layer differ
    with np.load(r.out / IR_ARRAYS) as z:
        arrays = {k: z[k] for k in z.files}
    w = arrays["0.weights"]
    w.flat[0] = w.flat[0] + 1 if w.flat[0] < 0 else w.flat[0] - 1
    np.savez(r.out / IR_ARRAYS, **arrays)
    rep = verify(r.out, n=3, n_features=0)
    first = r.graph.layer_ops()[0].name
    assert not rep.ok and first in rep.checks[0].detail, rep.text()
    # a project without the IR's arrays (an older emit) is refused with one line
    (r.out / IR_ARRAYS).unlink()
    with pytest.raises(Esc2cError, match="older esc2c; emit it again"):
        verify(r.out, n=1)


def _with_rounding(src, dest, value):
    m = onnx.load(str(src))
    onnx.helper.set_model_props(m, {META_ROUNDING: value})
    onnx.save(m, str(dest))
    return dest


@needs_cmake
def test_emit_takes_the_rounding_from_the_model_and_says_when_overridden(models, tmp_path, capsys):
    single = _with_rounding(models["vgg"], tmp_path / "single.onnx", "single")
    r = emit(single, tmp_path / "a", n_vectors=2)
    meta = json.loads((r.out / "esc2c.json").read_text())
    assert (meta["rounding"], meta["rounding_source"], r.notes) == ("single", "model metadata", [])
    assert Project.open(r.out).rounding == "single"
    assert "ESC2C_ROUNDING SINGLE" in (r.out / "CMakeLists.txt").read_text().replace('"', "")
    rep = verify(r.out, n=2, n_features=0)  # verify builds the rounding the project was emitted with
    assert rep.rounding == "single" and rep.ok, rep.text()

    assert cli_main(["emit", str(single), "-o", str(tmp_path / "b"), "--rounding", "double", "--vectors", "1"]) == 0
    said = capsys.readouterr().out
    assert "note: rounding double as asked, overriding the model's esc2c.rounding=single" in said
    assert json.loads((tmp_path / "b" / "esc2c.json").read_text())["rounding_source"] == "command line"

    bad = _with_rounding(models["vgg"], tmp_path / "bad.onnx", "banker")
    with pytest.raises(Esc2cError, match="esc2c.rounding='banker' is not one of double, single"):
        emit(bad, tmp_path / "c", n_vectors=1)
    assert not (tmp_path / "c").exists()


def test_run_passes_checks_each_pass_and_names_it(models, monkeypatch):
    def forgets_kernels(g, o):
        g = passes.kernel_select(g, o.kernels)
        g.layer_ops()[1].kernel = None
        return g

    pipeline = tuple((n, forgets_kernels if n == "kernel_select" else p) for n, p in passes.PIPELINE)
    monkeypatch.setattr(passes, "PIPELINE", pipeline)
    with pytest.raises(AssertionError, match=r"after kernel_select: no kernel for \S+"):
        passes.run_passes(importer.load_ir(models["vgg"]))


def test_auto_fusion_is_decided_by_the_runner_not_the_pass(models):
    g = importer.load_ir(models["vgg"])
    with pytest.raises(ValueError, match="fuse mode must be one of"):
        fuse_conv_pool(g, "auto")
    auto = compile_model(models["vgg"])
    best = min((compile_model(models["vgg"], fuse=m) for m in ("all", "none")), key=lambda x: x.arena_size)
    assert auto.arena_size == best.arena_size
