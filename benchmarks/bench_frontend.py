"""The C log-mel front end, raw audio end to end: per dataset (UrbanSound8K 4 s, ESC-50 5 s clips from
../shared/data) a small INT8 model is trained on a few clips and exported with its FeatureSpec, emitted
with the front end, and then

* host: C front end + C model (esc2c_audio_host) vs the Python pipeline (logmel float64 -> QuantizeLinear ->
  integer reference model) on --host-clips clips: share of identical int8 input elements, max difference,
  predicted class agreement;
* QEMU Cortex-M7 (mps2-an500, firmware_audio): --qemu-batches firmware builds with --qemu-clips compiled-in
  clips each: the same checks on the M7, and instructions of the front end per hop (streaming), per clip
  (whole clip) and of the model per inference (instruction-count plugin; latency at 216 MHz is an estimate
  at 1 instruction/cycle, QEMU models no timing);
* flash and RAM of the front end in the linked Cortex-M7 image, and the stm32f746zg raw-audio firmware size.

    .venv/bin/python benchmarks/bench_frontend.py [--datasets urbansound8k,esc50] [--host-clips 100]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from _logmel_models import clip_files, label_of, make_model, read  # noqa: E402

from esc2c.compiler.emit import emit  # noqa: E402
from esc2c.compiler import audio_check  # noqa: E402
from esc2c.logmel import firmware  # noqa: E402
from esc2c.logmel.project_files import AUDIO_FLASH_BUDGET  # noqa: E402

SECONDS = {"urbansound8k": 4.0, "esc50": 5.0}
N_CLASSES = {"urbansound8k": 10, "esc50": 50}
CLOCK = 216e6


def bench(dataset: str, args, tmp: Path) -> None:
    data = ROOT.parent / "shared" / "data"
    n_train = 40
    files = clip_files(data, dataset, n_train + args.host_clips)
    train = files[::2][:n_train] if len(files) >= 2 * n_train else files[:n_train]
    test = [f for f in files if f not in set(train)][: args.host_clips]
    t0 = time.perf_counter()
    spec = make_model(tmp / "model.onnx", SECONDS[dataset], read(train), [label_of(f) for f in train],
                      N_CLASSES[dataset], epochs=40)
    print(f"\n== {dataset}: {spec.clip_seconds:g} s clips, log-mel {spec.n_mels} x {spec.frames}, n_fft {spec.n_fft}, "
          f"hop {spec.hop_length} ({spec.hop_length / spec.sample_rate * 1e3:.0f} ms); model trained on {len(train)} "
          f"clips in {time.perf_counter() - t0:.0f} s")
    pcms = read(test)
    r = emit(tmp / "model.onnx", tmp / "host", n_vectors=1)
    rep = audio_check.compare(r.out, pcms)
    print(f"host (x86-64, gcc, CMake Release): {rep.text()}; {len(set(rep.py_classes.tolist()))} distinct classes predicted")

    same = elements = worst = agree = clips = 0
    fe_clip, model_instr, hops = [], [], []
    fw = None
    builds = 0
    per_build = max(1, min(args.qemu_clips, AUDIO_FLASH_BUDGET // (2 * spec.n_samples) - 1))  # + 1 synthetic
    for b in range(args.qemu_batches):
        batch = test[b * per_build:(b + 1) * per_build]
        if not batch:
            break
        out = emit(tmp / "model.onnx", tmp / f"qemu{b}", board="mps2-an500", n_vectors=1, audio=batch).out
        fw, run = firmware.run(out)
        builds += 1
        for c in run.clips:
            same, elements, worst = same + c.identical, elements + c.size, max(worst, c.max_diff)
            agree += c.predicted == c.expected
            clips += 1
            if not c.stream_ok:
                print(f"  clip {c.index} of batch {b}: streaming window differs from the whole-clip input")
        fe_clip += run.frontend_instructions
        model_instr += run.model_instructions
        for h in run.hop_instructions:
            hops += h[1:]  # the first hop only fills the ring (no column yet)
    if clips:
        print(f"QEMU Cortex-M7 (mps2-an500, arm-none-eabi-gcc, CMake Release): {clips} clips ({clips - builds} "
              f"real + {builds} synthetic, {builds} firmware builds): int8 input identical {same / elements:.4%}, max diff {worst} "
              f"LSB; class equal to the Python pipeline on {agree}/{clips}")
        hop_med = statistics.median(hops)
        fe_med, model_med = statistics.median(fe_clip), statistics.median(model_instr)
        hop_ms = spec.hop_length / spec.sample_rate * 1e3
        print(f"instructions: front end per hop (streaming, one column) median {hop_med:,.0f} "
              f"(min {min(hops):,}, max {max(hops):,}) = {hop_med / CLOCK * 1e3:.3f} ms at 216 MHz* "
              f"= {hop_med / CLOCK * 1e3 / hop_ms:.2%} of the {hop_ms:.0f} ms hop")
        print(f"              front end per clip (whole clip, {spec.frames} frames) {fe_med:,.0f} "
              f"= {fe_med / CLOCK * 1e3:.1f} ms*; model per inference {model_med:,.0f} = {model_med / CLOCK * 1e3:.1f} ms*; "
              f"front end / model = {fe_med / model_med:.2f}")
        fp = firmware.frontend_footprint(fw.elf)
        print(f"front end in the M7 image: flash {fp['flash_total']:,} B (code {fp['code']:,} incl. CMSIS-DSP FFT and "
              f"log10f, FFT tables {fp['fft_tables']:,}, window + mel tables {fp['frontend_tables']:,}); "
              f"RAM state {fp['state_ram']:,} B")
    stm = firmware.build(tmp / "qemu0", "stm32f746zg")
    print(f"stm32f746zg firmware_audio ({per_build + 1} PCM clips compiled in): flash {stm.flash_bytes:,} / "
          f"{stm.flash_limit:,} B, RAM {stm.ram_bytes:,} / {stm.ram_limit:,} B")
    print("* latency estimates: 1 instruction per cycle at 216 MHz (QEMU counts instructions, models no timing)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="urbansound8k,esc50")
    ap.add_argument("--host-clips", type=int, default=100)
    ap.add_argument("--qemu-clips", type=int, default=4, help="real clips per firmware build (flash-bound)")
    ap.add_argument("--qemu-batches", type=int, default=3)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(2)
    for ds in args.datasets.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            bench(ds, args, Path(tmp))


if __name__ == "__main__":
    main()
