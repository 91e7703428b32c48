"""esc2c's static arena vs TFLite Micro's smallest working arena for the same model.

    python benchmarks/bench_tflm_arena.py [MODEL.onnx | EMITTED_OUT_DIR ...] [--arch vgg11 --width 0.17]

With no model argument: the compiler's VGG-style and ResNet-style test models (tests/_compiler_models.py:
torch -> ONNX -> onnxruntime quantize_static), and esc2c exports (QAT calibrated on random data, then
esc2c's QDQ export) of VGG-11 and ResNet-18 at width 0.17 (about 97 % of the parameters removed, the
paper's compression, spread uniformly) on the UrbanSound8K log-mel shape 64 x 124. The arena depends on
the shapes only, not on trained weights. --arch/--width measure one such export instead.

For each model prints: the esc2c planner's arena (and its peak / lower bound), the sum of all tensor
sizes, and for the .tflite written from the same IR the smallest arena_size with which the tflite-micro
interpreter allocates and runs the model (bisection, each probe in a child process), split into what
TFLM's recording allocator reports as head (tensor data, TFLM's own planner) and tail (persistent:
interpreter structs, op data, quantization arrays). Goal: esc2c's arena <= 0.6 x TFLM's arena.
Note the host interpreter is 64-bit: its persistent structs are larger than on a Cortex-M.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

GOAL = 0.6


def _default_models(tmp: Path) -> list[Path]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import torch

    torch.set_num_threads(1)
    from _compiler_models import build

    return [build("vgg", tmp), build("resnet", tmp)]


def _esc2c_export(arch: str, width: float, tmp: Path) -> Path:
    import torch

    from esc2c.features import FeatureSpec
    from esc2c.models.registry import build_model
    from esc2c.quant import export, qat

    torch.manual_seed(0)
    spec = FeatureSpec(sample_rate=16000, clip_seconds=4.0, n_fft=1024, win_length=1024, hop_length=512, n_mels=64)
    shape = (1,) + tuple(spec.shape)
    m = build_model(arch, 10, width=width, in_shape=shape, aux=False).eval()
    q = qat.calibrate(qat.quantize_model(m), [torch.randn(4, *shape) for _ in range(2)]).eval()
    path = tmp / f"{arch}_w{width}.onnx"
    export.export_onnx(q, path, shape, feature_spec=spec)
    return path


def measure(model: Path) -> dict:
    from esc2c.compiler.driver import compile_model
    from esc2c.compiler.tflite_writer import write_tflite
    from esc2c.compiler.tflm import smallest_arena

    g = compile_model(model)
    unfused = compile_model(model, fuse="none")  # every conv output stored whole (no band-wise conv + pool)
    m = write_tflite(g)
    t0 = time.perf_counter()
    s = smallest_arena(m.data)
    return {"model": model, "layers": len(g.layer_ops()), "arena": g.arena_size, "plan": g.plan_stats,
            "unfused_arena": unfused.arena_size, "fused_ops": sum(op.kind == "conv_pool" for op in g.ops),
            "tflite_bytes": len(m.data), "pads": len(m.inserted_pads), "tflm": s,
            "search_s": time.perf_counter() - t0}


def report(r: dict) -> bool:
    p, s = r["plan"], r["tflm"]
    ratio = r["arena"] / s.size
    print(f"model: {r['model']} ({r['layers']} layers, .tflite {r['tflite_bytes']} B"
          + (f", {r['pads']} PAD op(s) added for pads TFLite's SAME cannot express" if r["pads"] else "") + ")")
    print(f"  esc2c arena (static plan):      {r['arena']:>8} B  (peak {p['peak_bytes']} B; tensors live at once "
          f"{p['lower_bound_bytes']} B, which overlap lets the plan undercut; CMSIS-NN scratch up to {p['scratch_bytes_max']} B)")
    print(f"  esc2c arena, no conv+pool fusion: {r['unfused_arena']:>6} B  ({r['unfused_arena'] / s.size:.2f}x TFLM; "
          f"fused: {r['fused_ops']} conv + pool pair(s) run band-wise)")
    print(f"  sum of all tensor sizes:        {p['sum_of_tensors_bytes']:>8} B")
    print(f"  TFLM smallest working arena:    {s.size:>8} B  ({s.probes} probes, {r['search_s']:.1f} s; recorded "
          f"head {s.recorded_head} B tensor data + tail {s.recorded_total - s.recorded_head} B persistent)")
    ok = ratio <= GOAL
    print(f"  esc2c / TFLM arena:             {ratio:>8.2f}x  (goal <= {GOAL}x: {'met' if ok else 'NOT met'}); "
          f"vs TFLM's tensor data alone {r['arena'] / max(1, s.recorded_head):.2f}x")
    return ok


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*", help="INT8 QDQ ONNX files or emitted project directories")
    ap.add_argument("--arch", choices=["vgg11", "resnet18", "small"], help="measure an esc2c export of this model")
    ap.add_argument("--width", type=float, default=0.17, help="width multiplier for --arch (default 0.17)")
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench_tflm_") as tmp:
        tmp = Path(tmp)
        paths = [Path(p) / "model.onnx" if Path(p).is_dir() else Path(p) for p in a.models]
        if a.arch:
            paths.append(_esc2c_export(a.arch, a.width, tmp))
        if not paths:
            paths = _default_models(tmp) + [_esc2c_export(arch, 0.17, tmp) for arch in ("vgg11", "resnet18")]
        results = [measure(p) for p in paths]
        for r in results:
            report(r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
