"""Per-layer instruction profile of emitted models on QEMU mps2-an500 (Cortex-M7, CMSIS-NN DSP path).

    python benchmarks/bench_profile.py OUT [OUT ...]     profile projects written by `esc2c emit`
    python benchmarks/bench_profile.py --reference       also build + profile the paper-size reference model
                                                         with both conv kernel choices (--kernels fast,cmsis;
                                                         fast-int8: the fast kernel reading int8 weights in every
                                                         layer, as a flash limit at the code size makes emit
                                                         choose; fast-max=N: under `emit --max-flash N`)

The reference model (issue 6): input 1x64x128 int8, conv3x3 (same padding, ReLU) with 16, 32, 48, 48, 64,
64, 96 filters, 2x2 max pool after the 1st, 2nd, 4th and 6th conv, global average pool, FC to 10 classes
(160,458 parameters, 38.3 M MACs), quantized by onnxruntime's quantize_static (QDQ, int8 per channel) and
emitted with `esc2c emit --board stm32f746zg --kernels K`. Baseline measured on the same emulator: an AOT
compiler calling CMSIS-NN v4.0.0 at -O2 needs 91.5 M instructions per inference (0.42 MAC/instruction).

"conv MAC/instruction" counts the instructions of the convolution layers only: for a fused conv + pool
layer (conv_pool), the pooling kernel's own instructions are taken out, and so are its MACs.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BASELINE_INSTRUCTIONS = 91.5e6
PAPER_MS = (206, 300)


def reference_onnx(tmp: Path) -> Path:
    import torch
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from torch import nn

    torch.manual_seed(0)
    torch.set_num_threads(2)
    layers, cin = [], 1
    for i, cout in enumerate([16, 32, 48, 48, 64, 64, 96]):
        layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU()]
        if i in (0, 1, 3, 5):
            layers.append(nn.MaxPool2d(2))
        cin = cout
    model = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(96, 10)).eval()
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == 160_458, n_params
    fp = tmp / "reference_float.onnx"
    torch.onnx.export(model, torch.randn(1, 1, 64, 128), str(fp), input_names=["x"], output_names=["logits"],
                      opset_version=13, dynamo=False)
    rng = np.random.default_rng(0)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.data = iter([{"x": rng.standard_normal((1, 1, 64, 128)).astype(np.float32)} for _ in range(8)])

        def get_next(self):
            return next(self.data, None)

    q = tmp / "reference_int8.onnx"
    quantize_static(str(fp), str(q), Reader(), quant_format=QuantFormat.QDQ, activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8, per_channel=True)
    return q


def conv_only(p, graph=None) -> tuple[int, int]:
    """(MACs, instructions) of the convolution layers without the pooling of fused conv + pool layers."""
    from esc2c.compiler.ops import avg_pool, max_pool

    pool_functions = (*max_pool.KERNELS, avg_pool.AVG_POOL)
    conv = [L for L in p.layers if L.op in ("conv", "conv_pool")]
    instr = sum(L.instructions for L in conv)
    pool_fn = sum(f["instructions"] for f in p.functions if f["name"] in pool_functions)
    pool_layers = sum(L.instructions for L in p.layers if L.kernel in pool_functions)
    instr -= max(0, pool_fn - pool_layers)  # pooling inside conv_pool layers
    if graph is not None:
        macs = sum(op.attrs["conv"]["macs"] if op.kind == "conv_pool" else op.macs
                   for op in graph.layer_ops() if op.kind in ("conv", "conv_pool"))
    else:
        macs = sum(L.macs for L in conv)
    return macs, instr


def profile_project(out: Path, label: str, vectors: int, graph=None) -> dict:
    from esc2c.device.runner import run_qemu

    print(f"\n=== {label}: {out}")
    t0 = time.perf_counter()
    report = run_qemu(out, vectors=vectors, profile=True, echo=print)
    p = report.profile
    conv = [L for L in p.layers if L.op.startswith("conv")]
    conv_macs = sum(L.macs for L in conv)
    conv_instr = sum(L.instructions for L in conv)
    print(f"conv layers: {conv_macs / conv_instr if conv_instr else 0:.2f} MAC/instruction "
          f"({conv_instr / p.total_instructions:.1%} of the instructions)")
    by_kernel: dict[str, int] = {}
    for L in p.layers:
        by_kernel[L.kernel or L.op] = by_kernel.get(L.kernel or L.op, 0) + L.instructions
    for k, v in sorted(by_kernel.items(), key=lambda kv: -kv[1]):
        print(f"  {k:<34} {v:>13,} instructions ({v / p.total_instructions:.1%})")
    print(f"whole inference: {p.total_instructions / 1e6:.2f} M instructions, {p.macs_per_instruction:.2f} MAC/instr, "
          f"~{p.latency_ms_estimate:.1f} ms at 216 MHz (estimate from instruction counts); run took "
          f"{time.perf_counter() - t0:.1f} s")
    cmacs, cinstr = conv_only(p, graph)
    print(f"conv layers without their fused pooling: {cmacs:,} MACs in {cinstr:,} instructions = "
          f"{cmacs / cinstr if cinstr else 0:.2f} MAC/instruction (goal >= 1.0)")
    if label.startswith("reference"):
        print(f"vs the CMSIS-NN v4.0.0 AOT baseline ({BASELINE_INSTRUCTIONS / 1e6:.1f} M instructions): "
              f"{BASELINE_INSTRUCTIONS / p.total_instructions:.2f}x fewer (goal >= 1.5x); paper's deployed models "
              f"{PAPER_MS[0]}-{PAPER_MS[1]} ms at 216 MHz")
    return {"instructions": p.total_instructions, "mac_per_instr": p.macs_per_instruction,
            "conv_mac_per_instr": cmacs / cinstr if cinstr else 0.0, "flash": p.flash_bytes, "ram": p.ram_bytes,
            "arena": p.arena_bytes}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("projects", nargs="*", type=Path, help="emitted project directories")
    ap.add_argument("--reference", action="store_true", help="build and profile the paper-size reference model")
    ap.add_argument("--vectors", type=int, default=2, help="inputs checked bit-exact on QEMU per project")
    ap.add_argument("--kernels", default="fast,cmsis",
                    help="conv kernel choices for the reference model, comma-separated (fast, cmsis, fast-int8, "
                         "fast-max=BYTES)")
    ap.add_argument("--contracts", default="tflite,onnxruntime",
                    help="integer contracts for the reference model, comma-separated (tflite, onnxruntime)")
    args = ap.parse_args(argv)
    if not args.projects and not args.reference:
        ap.error("give emitted project directories and/or --reference")
    for out in args.projects:
        profile_project(out, "project", args.vectors)
    if args.reference:
        from esc2c.compiler.emit import emit
        from esc2c.compiler.footprint import CODE_BYTES

        def max_flash(kind: str) -> int | None:
            """The emit --max-flash of a --kernels choice (None: the board's)."""
            if kind == "fast-int8":
                return CODE_BYTES + 1
            return int(kind.partition("=")[2]) if kind.startswith("fast-max=") else None

        kinds = [k.strip() for k in args.kernels.split(",") if k.strip()]
        bad = [k for k in kinds if k not in ("fast", "cmsis", "fast-int8")
               and not (k.startswith("fast-max=") and k.partition("=")[2].isdigit())]
        if bad or not kinds:
            ap.error(f"--kernels: choose from fast, cmsis, fast-int8, fast-max=BYTES (got {args.kernels!r})")
        contracts = [c.strip() for c in args.contracts.split(",") if c.strip()]
        if not contracts or any(c not in ("tflite", "onnxruntime") for c in contracts):
            ap.error(f"--contracts: choose from tflite, onnxruntime (got {args.contracts!r})")
        rows = {}
        with tempfile.TemporaryDirectory(prefix="esc2c-ref-") as tmp:
            tmp = Path(tmp)
            model = reference_onnx(tmp)
            for c in contracts:
                for k in kinds:
                    t0 = time.perf_counter()
                    res = emit(model, tmp / f"out_{c}_{len(rows)}", board="stm32f746zg", n_vectors=2,
                               kernels="cmsis" if k == "cmsis" else "fast", contract=c, max_flash=max_flash(k))
                    for note in res.notes:
                        if note.startswith("flash:"):
                            print(f"note: {note}")
                    print(f"\nreference model, --contract {c} --kernels {k}: emitted in {time.perf_counter() - t0:.1f} s "
                          f"(arena {res.arena_bytes:,} B, weights {res.weight_bytes:,} B)")
                    rows[f"{c}/{k}"] = profile_project(res.out, f"reference --contract {c} --kernels {k}", args.vectors,
                                                       res.graph) | {"weights": res.weight_bytes}
        print(f"\nreference model (38.3 M MACs), one inference on QEMU mps2-an500, firmware at -O3:")
        print(f"{'contract/kernels':<24} {'instructions':>13} {'vs 91.5 M':>9} {'MAC/instr':>9} {'conv MAC/instr':>14} "
              f"{'weights B':>10} {'flash B':>10} {'RAM B':>9} {'arena B':>9}")
        for k, r in rows.items():
            print(f"{k:<24} {r['instructions']:>13,} {BASELINE_INSTRUCTIONS / r['instructions']:>8.2f}x "
                  f"{r['mac_per_instr']:>9.2f} {r['conv_mac_per_instr']:>14.2f} {r['weights']:>10,} {r['flash']:>10,} "
                  f"{r['ram']:>9,} {r['arena']:>9,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
