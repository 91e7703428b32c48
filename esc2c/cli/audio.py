"""`esc2c audio`: raw audio end to end on an emitted project with a front end."""
from __future__ import annotations

import click
import numpy as np

from esc2c.compiler import audio_check
from esc2c.device.build import check_project
from esc2c.errors import Esc2cError
from esc2c.logmel import firmware, python_frontend
from esc2c.logmel.project_files import spec_from_onnx


@click.command("audio")
@click.argument("out", type=click.Path(file_okay=False, exists=True))
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False, exists=True))
@click.option("--target", type=click.Choice(["host", "qemu"]), default="host", show_default=True,
              help="host: C front end + C model built for this machine on FILES (default: the project's PCM test "
                   "clips); qemu: firmware_audio (the compiled-in clips) on QEMU mps2-an500 with instruction counts")
def audio_cmd(out, files, target):
    """Run OUT's C front end + model on raw audio and compare with the Python pipeline
    (>= 99 % identical int8 input elements, max 1 LSB, the same predicted class)."""

    out = check_project(out)
    if target == "qemu":
        if files:
            raise Esc2cError("--target qemu runs the clips compiled into the firmware; give them to `esc2c emit --audio`")
        fw, run = firmware.run(out)
        for c in run.clips:
            click.echo(f"clip {c.index}: {c.identical}/{c.size} identical, max diff {c.max_diff}, class {c.predicted} "
                       f"(Python {c.expected}), streaming {'==' if c.stream_ok else '!='} whole clip: "
                       f"{'PASS' if c.passed else 'FAIL'}")
        hops = [h for hs in run.hop_instructions for h in hs[1:]]
        click.echo(f"instructions: front end {int(np.median(run.frontend_instructions)):,} per clip, "
                   f"{int(np.median(hops)):,} per hop (median); model {int(np.median(run.model_instructions)):,} "
                   f"per inference; firmware_audio flash {fw.flash_bytes:,} B, RAM {fw.ram_bytes:,} B")
        if run.exit_code != 0 or not all(c.passed for c in run.clips):
            raise Esc2cError("raw-audio check failed on QEMU")
        return
    spec = spec_from_onnx(out / "model.onnx")
    if spec is None:
        raise Esc2cError(f"{out}/model.onnx carries no FeatureSpec: the project has no front end")
    if files:
        pcms = [python_frontend.read_pcm(f, spec.sample_rate) for f in files]
    else:
        pcm, lengths = np.load(out / "audio_vectors" / "pcm.npy"), np.load(out / "audio_vectors" / "lengths.npy")
        pcms = [p[:n] for p, n in zip(pcm, lengths)]
    rep = audio_check.compare(out, pcms)
    click.echo(rep.text())
    if rep.identical_share < 0.99 or rep.max_diff > 1 or rep.class_agreement < 0.99:
        raise Esc2cError("raw-audio check failed: the C pipeline differs from the Python pipeline beyond the bounds")
