"""The compiler's instruction cost model (esc2c/compiler/costmodel.py) against QEMU profiles, per layer.

    python benchmarks/bench_costmodel.py                 estimate vs measured for the calibration models
    python benchmarks/bench_costmodel.py --models reference,vgg11-p97
    python benchmarks/bench_costmodel.py --fit           also refit the coefficients on all measured layers
                                                         and print them (paste into costmodel.COEFFS)
    python benchmarks/bench_costmodel.py --save S.json   keep the measurements; --load S.json reuses them
    python benchmarks/bench_costmodel.py --firmware      also the STM32F746ZG firmware's flash/RAM beside the
                                                         model (the constants of esc2c/compress/budget.py)

Models: the paper-size reference model of bench_profile.py (``reference``: fast kernels, ``reference-cmsis``:
CMSIS-NN convolutions) and ESCNets quantized with random calibration (esc2c.compress.deploy_graph): a
VGG-11 (width 0.25, 40 x 173 input) pruned by CUP to 97 % and to 90 % (channel multiple 4), a pruned
ResNet-18 (residual adds, 1x1 shortcuts), the small CNN and a VGG-11 pruned to 80 %. Each is emitted and run
once on QEMU mps2-an500 with the per-layer profile (esc2c/device/runner.py). The goal: the whole-inference
estimate within 10 % of the measurement for the reference model and the pruned VGG-11.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from esc2c.compiler import costmodel  # noqa: E402

IN_SHAPE = (1, 40, 173)
MODELS = ("reference", "reference-cmsis", "vgg11-p97", "vgg11-p90m4", "resnet18-p80", "small", "vgg11-p80")
# also measurable: NAME-int8, the fast convolutions reading int8 weights (emit under a flash limit none of
# their int16 weights fit), e.g. reference-int8, vgg11-p90m4-int8


def escnet(name: str):
    import torch

    from esc2c.compress import cup
    from esc2c.models.registry import build_model

    torch.manual_seed(0)
    arch, _, tag = name.partition("-")
    m = build_model(arch, 10, width=0.25 if arch != "small" else 0.5, in_shape=IN_SHAPE).eval()
    if tag == "p97":
        m = cup.prune_to_ratio(m, 0.97).model
    elif tag == "p90m4":
        m = cup.prune_to_ratio(m, 0.90, channel_multiple=4, min_channels=8).model
    elif tag == "p80":
        m = cup.prune_to_ratio(m, 0.80).model
    return m.eval()


def onnx_for(name: str, tmp: Path) -> tuple[Path, str]:
    name = name.removesuffix("-int8")
    if name.startswith("reference"):
        from bench_profile import reference_onnx

        return reference_onnx(tmp), "cmsis" if name.endswith("cmsis") else "fast"
    from esc2c.compress.deploy_graph import quantized_onnx

    return quantized_onnx(escnet(name), IN_SHAPE, tmp / f"{name}.onnx"), "fast"


def firmware_overhead(name: str, res) -> dict:
    """STM32F746ZG firmware of an emitted project: flash beside the model's constants and its one self-test
    vector, RAM beside the arena (what esc2c/compiler/footprint.py counts as CODE_BYTES / RAM_BASE_BYTES)."""
    from esc2c.compiler.ops.conv_fast import flash_bytes_delta
    from esc2c.compiler import footprint
    from esc2c.device.build import build_firmware

    fw = build_firmware(res.out, "stm32f746zg")
    g = res.graph
    consts = g.weight_bytes() + flash_bytes_delta(g)
    vector = g.input.size + g.output.size
    code, ram = fw.flash_bytes - consts - vector, fw.ram_bytes - g.arena_size
    print(f"{name}: STM32F746ZG firmware flash {fw.flash_bytes:,} B = constants {consts:,} + one vector {vector:,} + "
          f"code {code:,} (footprint uses {footprint.CODE_BYTES:,}); RAM {fw.ram_bytes:,} B = arena "
          f"{g.arena_size:,} + {ram:,} (footprint uses {footprint.RAM_BASE_BYTES:,})")
    return {"code": code, "ram_base": ram}


def measure(name: str, tmp: Path, firmware: bool = False) -> dict:
    from esc2c.compiler.emit import emit
    from esc2c.device.runner import run_qemu

    path, kernels = onnx_for(name, tmp)
    # the tflite contract for every model: the reference is onnxruntime-quantized, and under the onnxruntime
    # contract "--kernels cmsis" convolutions run the runtime's grouped conv instead of CMSIS-NN's
    from esc2c.compiler.footprint import CODE_BYTES

    res = emit(path, tmp / f"out_{name}", n_vectors=1, kernels=kernels, board="stm32f746zg" if firmware else None,
               contract="tflite", max_flash=CODE_BYTES + 1 if name.endswith("-int8") else None)
    if firmware:
        firmware_overhead(name, res)
    t0 = time.perf_counter()
    prof = run_qemu(res.out, vectors=1, profile=True, echo=lambda s: None).profile
    est = costmodel.estimate(res.graph)
    measured = [L.instructions for L in prof.layers]
    if len(measured) != len(est.layers):
        raise SystemExit(f"{name}: {len(measured)} profiled layers, {len(est.layers)} in the graph")
    print(f"\n=== {name} (--kernels {kernels}; QEMU run {time.perf_counter() - t0:.1f} s)")
    print(est.table(measured))
    counts = [costmodel.op_counts(op, res.graph) for op in res.graph.layer_ops()]
    return {"name": name, "counts": counts, "measured": measured, "table": [vars(L) for L in est.layers]}


def tables(rows: list[dict], coeffs=None) -> None:
    """Per-layer estimate vs measurement of stored rows (``--load``), with ``coeffs`` or the model's."""
    c = coeffs or costmodel.COEFFS
    for r in rows:
        layers = [costmodel.LayerEstimate(**{**t, "instructions": int(round(sum(c[k] * v for k, v in f.items())))})
                  for t, f in zip(r["table"], r["counts"])]
        print(f"\n=== {r['name']}")
        print(costmodel.CostEstimate(layers).table(r["measured"]))


def report(rows: list[dict], coeffs=None) -> None:
    print(f"\n{'model':<18} {'estimate':>13} {'measured':>13} {'error':>7} {'worst layer':>11}")
    for r in rows:
        est = [sum((coeffs or costmodel.COEFFS)[k] * v for k, v in c.items()) for c in r["counts"]]
        e, m = sum(est), sum(r["measured"])
        worst = max(abs(a - b) / b for a, b in zip(est, r["measured"]) if b)
        print(f"{r['name']:<18} {int(e):>13,} {m:>13,} {(e - m) / m:>+7.1%} {worst:>10.1%}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, from {', '.join(MODELS)}")
    ap.add_argument("--fit", action="store_true", help="refit the coefficients on the measured layers")
    ap.add_argument("--save", type=Path, default=None, help="write the measurements to this JSON file")
    ap.add_argument("--load", type=Path, default=None, help="reuse measurements from --save instead of QEMU")
    ap.add_argument("--firmware", action="store_true",
                    help="also build each model's STM32F746ZG firmware and print its flash/RAM beside the model")
    args = ap.parse_args(argv)
    if args.load:
        rows = json.loads(args.load.read_text())
        tables(rows)
    else:
        names = [n.strip() for n in args.models.split(",") if n.strip()]
        bad = [n for n in names if n.removesuffix("-int8") not in MODELS]
        if bad:
            ap.error(f"unknown models {bad}; choose from {', '.join(MODELS)} (each also as NAME-int8)")
        with tempfile.TemporaryDirectory(prefix="esc2c-cost-") as tmp:
            rows = [measure(n, Path(tmp), args.firmware) for n in names]
    if args.save:
        args.save.write_text(json.dumps(rows))
    report(rows)
    if args.fit:
        coeffs = costmodel.fit([(c, m) for r in rows for c, m in zip(r["counts"], r["measured"])])
        print("\nrefitted coefficients:")
        print("{" + ", ".join(f'"{k}": {v:.4g}' for k, v in coeffs.items()) + "}")
        report(rows, coeffs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
