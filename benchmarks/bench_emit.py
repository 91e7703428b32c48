"""Compiler figures for one INT8 QDQ ONNX model: emit time, arena plan vs tensor sizes, flash bytes.

    python benchmarks/bench_emit.py MODEL.onnx [--board stm32f746zg] [--repeat 3]

Prints: compile time (front end + passes) and full emit time (C, CMake project, integer ONNX, test
vectors), the planner's arena peak vs its lower bound vs the sum of all tensor sizes, weight bytes, and
flash/RAM: with --board from the real firmware build's size report (arm-none-eabi-gcc), otherwise the
sum of text+data of the model's objects compiled for Cortex-M7.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from esc2c.compiler.driver import compile_model
from esc2c.compiler.emit import cmsis_paths, emit


def _m7_objects_size(out: Path, work: Path) -> int:
    nn, core = cmsis_paths()
    flags = ["-mcpu=cortex-m7", "-mthumb", "-mfpu=fpv5-sp-d16", "-mfloat-abi=hard", "-O2", "-ffunction-sections",
             "-fdata-sections", f"-I{out}", f"-I{out / 'runtime/include'}", f"-I{nn / 'Include'}", f"-I{core}"]
    srcs = [out / "model.c", out / "weights.c", out / "runtime/src/esc2c_kernels.c", *sorted((nn / "Source").rglob("*.c"))]
    objs = []
    for i, s in enumerate(srcs):
        o = work / f"{i}.o"
        subprocess.run(["arm-none-eabi-gcc", *flags, "-c", str(s), "-o", str(o)], check=True)
        objs.append(str(o))
    r = subprocess.run(["arm-none-eabi-size", "-t", *objs], check=True, capture_output=True, text=True)
    total = r.stdout.strip().splitlines()[-1].split()
    return int(total[0]) + int(total[1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--board", default=None)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args(argv)

    t_compile = []
    for _ in range(a.repeat):
        t0 = time.perf_counter()
        g = compile_model(a.model)
        t_compile.append(time.perf_counter() - t0)
    work = Path(tempfile.mkdtemp(prefix="bench_emit_"))
    try:
        t_emit = []
        for i in range(a.repeat):
            r = emit(a.model, work / "out", board=a.board, n_vectors=8)
            t_emit.append(r.emit_seconds)
        s = g.plan_stats
        print(f"model: {a.model}")
        print(f"layers: {len(g.layer_ops())}, MACs: {sum(op.macs for op in g.ops)}")
        print(f"compile time (front end + passes): {min(t_compile):.3f} s (best of {a.repeat})")
        print(f"emit time (C + CMake project + integer ONNX + test vectors): {min(t_emit):.3f} s (best of {a.repeat})")
        print(f"arena: {g.arena_size} B (peak {s['peak_bytes']} B; disjoint-buffer lower bound {s['lower_bound_bytes']} B), "
              f"sum of all tensors {s['sum_of_tensors_bytes']} B -> {s['peak_bytes'] / s['sum_of_tensors_bytes']:.2f}x, "
              f"largest scratch {s['scratch_bytes_max']} B, {s['in_place_ops']} in-place ops, "
              f"{s['overlapped_ops']} outputs over consumed inputs")
        plain = compile_model(a.model, fuse="none")
        print(f"arena without conv+pool fusion (--fuse none): {plain.arena_size} B; "
              f"{sum(op.kind == 'conv_pool' for op in g.ops)} conv + pool pair(s) run band-wise")
        print(f"weights, biases, requantization tables (const, flash): {r.weight_bytes} B")
        if a.board:
            build = work / "out" / "build-fw"
            subprocess.run(["cmake", "-S", str(work / "out"), "-B", str(build),
                            "-DCMAKE_TOOLCHAIN_FILE=board/toolchain.cmake"], check=True, capture_output=True)
            subprocess.run(["cmake", "--build", str(build), "-j2"], check=True, capture_output=True)
            rep = dict(line.split(" ", 1) for line in (build / "size_report.txt").read_text().splitlines() if line)
            fl, fl_lim = rep["flash"].split()
            ram, ram_lim = rep["ram"].split()
            print(f"firmware ({a.board}): flash {fl} / {fl_lim} B, RAM {ram} / {ram_lim} B")
        elif shutil.which("arm-none-eabi-gcc"):
            print(f"flash (text+data of model + runtime + CMSIS-NN objects for Cortex-M7, before linking): "
                  f"{_m7_objects_size(work / 'out', work)} B")
        print("TFLite Micro arena for the same model: not measured by this script")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
