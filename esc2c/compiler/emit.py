"""Emission: the compiled IR as a self-contained C/CMake project (jinja2 templates in templates/).

OUT/
  model.h model.c weights.h weights.c test_vectors.h CMakeLists.txt   generated C and build
  host/main.c                                                         host runner + ctest
  runtime/                                                            copy of the repo's runtime/
  board/                                                              copy of boards/<board>/ (--board)
  model.onnx model.ir.json model.ir.npz model_int.onnx vectors/*.npy  inputs, the exact IR, integer reference
  model.tflite tflm/                                                  TFLite Micro reference (tflm.py)
"""
from __future__ import annotations

import json
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from esc2c import __version__
from esc2c.compiler import ops
from esc2c.compiler.driver import compile_ir
from esc2c.compiler.footprint import CODE_BYTES, RAM_BASE_BYTES, code_bytes, vector_bytes
from esc2c.compiler.importer import load_ir
from esc2c.compiler.ir import Graph
from esc2c.compiler.lower_onnx import lower_to_onnx, run_int_onnx
from esc2c.compiler.ops.conv_fast import flash_bytes_delta
from esc2c.compiler.ops.base import c_float
from esc2c.compiler.options import DEFAULT_KERNELS, CompileOptions
from esc2c.compiler.project import save_graph
from esc2c.compiler.tflm import emit_tflm
from esc2c.contract import (CONTRACTS, DEFAULT_ROUNDING, META_ACTIVATIONS, META_PRODUCER, META_ROUNDING, ONNXRUNTIME, ORT_PRODUCERS,
                            ORT_ROUNDING, PROJECT_META, ROUNDING_MODES, TFLITE, contract_of)
from esc2c.device.boards import copy_board
from esc2c.errors import Esc2cError
from esc2c.fsutil import claim_output_dir, output_dir
from esc2c.logmel import project_files as fe_project
from esc2c.resources import boards_dir, runtime_dir
from esc2c.templating import render

RUNTIME = runtime_dir()
BOARDS = boards_dir()


@dataclass
class EmitResult:
    out: Path
    graph: Graph
    emit_seconds: float
    weight_bytes: int
    arena_bytes: int
    sum_of_tensors_bytes: int
    notes: list[str] = field(default_factory=list)  # e.g. where the rounding came from when overridden
    rounding: str = DEFAULT_ROUNDING  # the arithmetic: a tflite rounding mode, or ORT_ROUNDING (onnxruntime)
    rounding_source: str = "default"

    def summary(self) -> str:
        s = self.graph.plan_stats
        return (f"{self.out}: {len(self.graph.layer_ops())} layers, weights {self.weight_bytes} B (flash), "
                f"arena {self.arena_bytes} B (disjoint-buffer lower bound {s['lower_bound_bytes']} B, all tensors "
                f"{self.sum_of_tensors_bytes} B), emitted in {self.emit_seconds:.2f} s")


def cmsis_paths() -> tuple[Path, Path]:
    """(CMSIS-NN dir with Include/ and Source/, CMSIS Core include dir) inside the bakenn wheel."""
    try:
        import bakenn  # optional until emit: a missing CMSIS-NN source package is one clear error
    except ImportError:
        raise Esc2cError("the bakenn package (CMSIS-NN sources) is not installed: pip install bakenn==1.0.0") from None
    vendor = Path(bakenn.__file__).resolve().parent / "backend" / "cmsis_nn" / "vendor"
    nn, core = vendor / "cmsis_nn", vendor / "cmsis_core" / "Include"
    if not (nn / "Include" / "arm_nnfunctions.h").is_file():
        raise Esc2cError(f"bakenn is installed but has no CMSIS-NN sources under {nn}")
    return nn, core


def board_limits(board: str) -> tuple[int, int]:
    """(flash, RAM) bytes of a board, read from its boards/<board>/board.cmake."""
    f = BOARDS / board / "board.cmake"
    if not f.is_file():
        known = sorted(p.name for p in BOARDS.iterdir() if (p / "board.cmake").is_file()) if BOARDS.is_dir() else []
        raise Esc2cError(f"unknown board {board!r}; known boards: {', '.join(known) or 'none'}")
    text = f.read_text()
    vals = {}
    for key in ("ESC2C_FLASH_LIMIT", "ESC2C_RAM_LIMIT"):
        m = re.search(rf"set\(\s*{key}\s+(\d+)\s*\)", text)
        if not m:
            raise Esc2cError(f"{f}: no {key} set")
        vals[key] = int(m.group(1))
    return vals["ESC2C_FLASH_LIMIT"], vals["ESC2C_RAM_LIMIT"]


def check_fit(g: Graph, board: str, n_vectors: int = 0) -> dict:
    """Whether the firmware of ``g`` with ``n_vectors`` self-test vectors fits ``board``, counted before building
    (footprint.py): the constants as stored (int16 weights for the fast kernel's int16 layers) + the vectors + the
    code; the arena + the stack and runtime data."""
    flash_limit, ram_limit = board_limits(board)
    consts = g.weight_bytes() + flash_bytes_delta(g)
    vec = vector_bytes(g.input.size, g.output.size, n_vectors)
    code = code_bytes(g)
    flash = consts + vec + code
    ram = g.arena_size + RAM_BASE_BYTES
    problems = []
    if flash > flash_limit:
        problems.append(f"flash needs {flash} B (constants {consts} + {n_vectors} test vectors {vec} + code "
                        f"{code}) > {flash_limit} B by {flash - flash_limit} B")
    if ram > ram_limit:
        problems.append(f"RAM needs {ram} B (arena {g.arena_size} + stack and runtime {RAM_BASE_BYTES}) > "
                        f"{ram_limit} B by {ram - ram_limit} B")
    if problems:
        raise Esc2cError(f"the model does not fit {board}: " + "; ".join(problems))
    return {"flash": flash, "flash_limit": flash_limit, "ram": ram, "ram_limit": ram_limit}


# ---------------------------------------------------------------- C rendering helpers
def _c_string(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"', '\\"')


def _c_literal(x) -> str:
    return c_float(x) if np.issubdtype(np.asarray(x).dtype, np.floating) else str(int(x))


def _c_body(values: np.ndarray, per_line: int = 24) -> str:
    v = np.asarray(values).ravel()
    floats = np.issubdtype(v.dtype, np.floating)
    if floats and v.dtype != np.float32:
        raise ValueError(f"C arrays hold float32 values, got {v.dtype}")
    per_line = per_line // 3 if floats else per_line
    lines = [", ".join(_c_literal(x) for x in v[i:i + per_line]) for i in range(0, v.size, per_line)]
    return ",\n".join("    " + ln for ln in lines)


def _c_row(values: np.ndarray) -> str:
    return ", ".join(str(int(x)) for x in np.asarray(values).ravel())


def _layers(g: Graph) -> tuple[list[dict], list[dict]]:
    arrays: list[dict] = []

    def array(name, ctype, values):
        arrays.append({"name": name, "ctype": ctype, "size": int(np.asarray(values).size),
                       "body": _c_body(values)})
        return name

    def hwc(shape):
        if len(shape) == 4:
            return shape[1:]
        return (1, 1, int(np.prod(shape[1:])))

    layers = []
    for op in g.layer_ops():
        i = len(layers)
        x, y = g.tensors[op.inputs[0]], g.tensors[op.output]
        L = {"index": i, "cname": _c_string(op.name), "kind": op.kind, "kernel": op.kernel, "macs": op.macs,
             "in_off": x.offset, "out_off": y.offset, "out_size": y.size, "in_dims": hwc(x.shape),
             "out_dims": hwc(y.shape), "in_offset": -x.zero_point, "out_offset": y.zero_point,
             "act_min": op.act_min, "act_max": op.act_max, "scratch": op.scratch,
             "scratch_ptr": f"&esc2c_arena[{op.attrs['scratch_offset']}]" if op.scratch else "NULL"}
        if "kernel" in op.attrs:
            L["kernel_hw"] = op.attrs["kernel"]
            L["stride"] = op.attrs["stride"]
            L["pad"] = op.attrs["pads"][:2]
        kind = ops.get(op.kind)
        L["template"] = kind.template(op)  # templates/ops/, included by model.c.j2
        kind.c_context(op, g, L, array)
        layers.append(L)
    return layers, arrays


def arithmetics(g: Graph) -> tuple[str, ...]:
    """The arithmetics the IR's parameters allow: both tflite roundings, or the onnxruntime one."""
    return (ORT_ROUNDING,) if g.contract == ONNXRUNTIME else ROUNDING_MODES


def make_vectors(g: Graph, n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """n random int8 inputs (NHWC) and the integer-ONNX logits for them in every arithmetic the IR allows."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, (n,) + tuple(g.input.shape[1:]), dtype=np.int64).astype(np.int8)
    out = {"inputs": x}
    for mode in arithmetics(g):
        out[f"outputs_{mode}"] = run_int_onnx(lower_to_onnx(g, mode), x)[g.outputs[0]].reshape(n, -1)
    return out


def looks_like_project(path: Path) -> bool:
    """A project emitted before output markers existed (its esc2c.json, sources and build caches only)."""
    known = {"model.h", "model.c", "weights.c", "weights.h", "test_vectors.h", "CMakeLists.txt", "host", "runtime",
             "board", "model.onnx", "model.ir.json", "model.ir.npz", "model_int.onnx", "vectors", "model.tflite", "tflm",
             "esc2c.json", "profile", "audio_vectors", "audio_vectors.h", "build", "out"}
    return (path / "esc2c.json").is_file() and (path / "model.c").is_file() and all(
        p.name in known or p.name.startswith((".", "esc2c_frontend")) for p in path.iterdir())


def model_arithmetic(onnx_path: Path, meta: dict, contract: str | None,
                     rounding: str | None) -> tuple[str, str, str | None]:
    """(arithmetic: a tflite rounding mode or ORT_ROUNDING, where it came from, a note when an explicit
    choice overrides the model's metadata).

    The contract: as asked; else tflite when a rounding mode is asked or the model carries
    ``esc2c.rounding`` (written by `esc2c compress`, whose QAT trained for it); else onnxruntime when
    onnxruntime's quantization tool wrote the model (its producer_name); else tflite. The tflite rounding:
    as asked, else the model's ``esc2c.rounding``, else double."""
    meta_r = meta.get(META_ROUNDING)
    if meta_r is not None and meta_r not in ROUNDING_MODES:
        raise Esc2cError(f"{onnx_path}: metadata {META_ROUNDING}={meta_r!r} is not one of {', '.join(ROUNDING_MODES)}")
    if contract is not None and contract not in CONTRACTS:
        raise Esc2cError(f"contract must be one of {', '.join(CONTRACTS)}, got {contract!r}")
    if rounding is not None and rounding not in ROUNDING_MODES:
        raise Esc2cError(f"rounding must be one of {', '.join(ROUNDING_MODES)}, got {rounding!r}")
    producer = meta.get(META_PRODUCER, "")
    if contract is None and rounding is None and meta_r is None and producer in ORT_PRODUCERS:
        return ORT_ROUNDING, f"model producer {producer!r} (onnxruntime's quantization tool)", None
    if contract == ONNXRUNTIME:
        if rounding is not None:
            raise Esc2cError(f"--rounding {rounding} is a tflite-contract choice; the onnxruntime contract rounds "
                             f"its float32 scales half to even")
        note = (f"contract onnxruntime as asked, though the model's {META_ROUNDING}={meta_r} says it was trained "
                f"for the tflite contract") if meta_r else None
        return ORT_ROUNDING, "command line", note
    if rounding is None:
        if meta_r:
            return meta_r, "model metadata", None
        note = (f"contract tflite as asked, though onnxruntime's quantization tool wrote the model"
                if contract == TFLITE and producer in ORT_PRODUCERS else None)
        return DEFAULT_ROUNDING, "default" if contract is None else "command line contract, default rounding", note
    if meta_r and meta_r != rounding:
        return rounding, "command line", (f"rounding {rounding} as asked, overriding the model's "
                                          f"{META_ROUNDING}={meta_r}")
    return rounding, "command line", None


def emit(onnx_path: str | Path, out: str | Path, board: str | None = None, rounding: str | None = None,
         n_vectors: int = 8, seed: int = 0, cmsis_nn_path: str | Path | None = None,
         frontend: bool | None = None, audio: tuple = (), kernels: str = DEFAULT_KERNELS,
         fuse: str = "auto", force: bool = False, contract: str | None = None,
         max_flash: int | None = None) -> EmitResult:
    """``max_flash``: bytes of flash the firmware may take (default: the board's, if one is named); the
    model's constants get that less the code and the test vectors (footprint.py), and the fast convolutions
    whose int16 weights do not fit
    read int8 ones (passes/fit_flash.py; a note names them). ``frontend``: generate the log-mel front end
    (None: when the model carries its FeatureSpec);
    ``audio``: PCM test clips for it (esc2c/logmel/project_files.py); ``kernels``: "fast" runs plain
    convolutions on the project's kernel (runtime/src/esc2c_conv_s8_fast.c), "cmsis" on CMSIS-NN's;
    ``contract``: "tflite" or "onnxruntime" (None: from the model, :func:`model_arithmetic`);
    ``rounding``: the tflite contract's, None = the model's ``esc2c.rounding`` metadata, else double (an
    explicit value overriding the metadata is noted in the result); ``fuse``: which conv -> pool pairs run band-wise without storing
    the conv output: "auto" (when that
    makes the arena smaller), "all" or "none" (passes/fuse_conv_pool.py). ``out`` is replaced only when it is
    empty or an earlier emit's project (``force``: also another esc2c command's output; never foreign files)."""
    t0 = time.perf_counter()
    onnx_path = Path(onnx_path)
    inputs = (onnx_path, *audio, *((cmsis_nn_path,) if cmsis_nn_path else ()))
    if max_flash is not None and max_flash <= CODE_BYTES:
        raise Esc2cError(f"max_flash must be more than the {CODE_BYTES} B the firmware's code takes, "
                         f"got {max_flash}")
    claim_output_dir(out, "emit", force, inputs, looks_like_project)
    if rounding is not None and rounding not in ROUNDING_MODES:
        raise Esc2cError(f"rounding must be one of {', '.join(ROUNDING_MODES)}, got {rounding!r}")
    limits = [x for x in (board_limits(board)[0] if board else None, max_flash) if x is not None]
    g = load_ir(onnx_path)
    budget = (max(0, min(limits) - CODE_BYTES - vector_bytes(g.input.size, g.output.size, n_vectors))
              if limits else None)
    rounding, rounding_source, note = model_arithmetic(onnx_path, g.metadata, contract, rounding)
    contract = contract_of(rounding)
    options = CompileOptions(kernels=kernels, fuse=fuse, flash_budget=budget, contract=contract)
    g = compile_ir(g, options=options)
    notes = [note] if note else []
    if contract == ONNXRUNTIME:
        notes += [f"layer '{op.name}': its clamp [{op.act_min}, {op.act_max}] is narrower than int8: onnxruntime "
                  f"fuses such a Relu/Clip only when the output's zero point makes it redundant, and otherwise "
                  f"computes the layer in float, which no integer kernel reproduces bit for bit"
                  for op in g.layer_ops() if (op.act_min, op.act_max) != (-128, 127)]
        wide = [op.name for op in g.ops if op.weights is not None and int(np.abs(op.weights).max()) > 63]
        if wide and g.metadata.get(META_ACTIVATIONS) == "uint8":
            notes.append(f"uint8 activations with int8 weights beyond +-63 ({', '.join(wide[:4])}"
                         f"{', ...' if len(wide) > 4 else ''}): on x86 CPUs without VNNI onnxruntime's default u8s8 "
                         f"kernels add products in saturating 16-bit pairs; the device computes exact sums, which "
                         f"onnxruntime gives with the session option session.x64quantprecision=1 (verify uses it)")
    narrowed = [op for op in g.ops if op.attrs.get("narrowed_for_flash")]
    if narrowed:
        saved = sum(op.attrs["narrowed_for_flash"] for op in narrowed)
        notes.append(f"flash: {len(narrowed)} convolution(s) read int8 weights (esc2c_conv_fast_s8_w8, 1.5 more "
                     f"instructions per 12 MACs) instead of the fast kernel's int16 ones, saving {saved} B to fit "
                     f"{board or 'the flash limit'} ({budget} B for constants): "
                     f"{', '.join(op.name for op in narrowed)}")
    fit = check_fit(g, board, n_vectors) if board else None
    nn_path, core_path = cmsis_paths()
    if cmsis_nn_path is not None:
        nn_path = Path(cmsis_nn_path).resolve()
        if not (nn_path / "Include" / "arm_nnfunctions.h").is_file():
            raise Esc2cError(f"{nn_path}: not a CMSIS-NN checkout (no Include/arm_nnfunctions.h)")
    vectors = make_vectors(g, n_vectors, seed)
    fe_plan = fe_project.plan(onnx_path, g, lambda x, mode: run_int_onnx(lower_to_onnx(g, mode), x)[g.outputs[0]],
                              frontend, list(audio), rounding_modes=arithmetics(g))
    layers, arrays = _layers(g)
    const_bytes = sum(a["size"] * {"int8_t": 1, "int16_t": 2}.get(a["ctype"], 4) for a in arrays)
    inp, outp = g.input, g.output
    ctx = {
        **fe_project.cmake_context(fe_plan),
        "version": __version__, "source": onnx_path.name, "layers": layers, "arrays": arrays,
        "input_size": inp.size, "output_size": outp.size, "arena_size": g.arena_size,
        "num_layers": len(layers), "input_hwc": inp.shape[1:] if len(inp.shape) == 4 else (1, 1, inp.size),
        "input_shape": list(inp.shape), "output_shape": list(outp.shape),
        "input_scale": repr(float(np.float32(inp.scale))), "input_zp": inp.zero_point,
        "output_scale": repr(float(np.float32(outp.scale))), "output_zp": outp.zero_point,
        "weight_bytes": const_bytes, "total_macs": sum(op.macs for op in g.ops),
        "input_offset": inp.offset, "output_offset": outp.offset,
        "sum_tensors": g.plan_stats["sum_of_tensors_bytes"], "lower_bound": g.plan_stats["lower_bound_bytes"],
        "cmsis_nn_path": nn_path.as_posix(), "cmsis_core_include": core_path.as_posix(),
        "rounding": rounding.upper(), "n": n_vectors,
        "inputs": [_c_row(v) for v in vectors["inputs"]],
        **{f"outputs_{mode}": [_c_row(v) for v in vectors.get(f"outputs_{mode}", [])]
           for mode in ROUNDING_MODES + (ORT_ROUNDING,)},
    }
    files = {"model.h": "model.h.j2", "model.c": "model.c.j2", "weights.c": "weights.c.j2",
             "weights.h": "weights.h.j2", "test_vectors.h": "test_vectors.h.j2",
             "CMakeLists.txt": "CMakeLists.txt.j2", "host/main.c": "host/main.c.j2"}
    out = Path(out)
    with output_dir(out, "emit", force, inputs, looks_like_project) as tmp:
        (tmp / "host").mkdir()
        for dest, tpl in files.items():
            (tmp / dest).write_text(render(tpl, **ctx))
        shutil.copytree(RUNTIME / "include", tmp / "runtime" / "include")
        shutil.copytree(RUNTIME / "src", tmp / "runtime" / "src")
        if fe_plan is not None:
            fe_project.write(fe_plan, tmp, __version__, onnx_path.name)
        if board:
            copy_board(board, tmp / "board")
        shutil.copyfile(onnx_path, tmp / "model.onnx")
        save_graph(g, tmp)  # model.ir.json + model.ir.npz: the exact IR, which verify and qdebug read back
        (tmp / "model_int.onnx").write_bytes(lower_to_onnx(g, rounding).SerializeToString())
        (tmp / "vectors").mkdir()
        for k, v in vectors.items():
            np.save(tmp / "vectors" / f"{k}.npy", v)
        if contract == TFLITE:
            # TFLite Micro reference path: model.tflite and the tflm/ firmware variant (esc2c/compiler/tflm.py)
            emit_tflm(g, tmp, vectors["inputs"], vectors["outputs_double"], onnx_path.name)
        meta = {"source": onnx_path.name, "contract": contract, "rounding": rounding,
                "rounding_source": rounding_source,
                "options": options.to_dict(), "kernels": kernels, "fuse": fuse, "board": board, "fit": fit,
                "frontend": fe_project.summary(fe_plan) if fe_plan is not None else None,
                "plan": g.plan_stats, "weight_bytes": const_bytes, "layers": [L["cname"] for L in layers],
                "layer_tensors": [op.output for op in g.layer_ops()], "layer_sizes": [L["out_size"] for L in layers]}
        (tmp / PROJECT_META).write_text(json.dumps(meta, indent=1))
    dt = time.perf_counter() - t0
    return EmitResult(out, g, dt, const_bytes, g.arena_size, g.plan_stats["sum_of_tensors_bytes"], notes,
                      rounding, rounding_source)
