"""`esc2c emit` and `esc2c verify`."""
from __future__ import annotations

import click

from esc2c.compiler import costmodel
from esc2c.compiler.emit import check_fit, emit
from esc2c.compiler.verify import verify
from esc2c.contract import CONTRACTS, ROUNDING_MODES
from esc2c.errors import Esc2cError


@click.command("emit")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("-o", "--out", required=True, type=click.Path(), help="project directory to write")
@click.option("--board", default=None, help="board to build firmware for (e.g. stm32f746zg); checks it fits")
@click.option("--contract", type=click.Choice(CONTRACTS), default=None,
              help="integer arithmetic of the emitted C: tflite (TFLite / CMSIS-NN fixed point; what `esc2c "
                   "compress` trains for and TFLite Micro computes) or onnxruntime (onnxruntime's fused integer "
                   "kernels, bit for bit) [default: onnxruntime for a model onnxruntime's quantization tool wrote "
                   "and no --rounding, else tflite]")
@click.option("--rounding", type=click.Choice(ROUNDING_MODES), default=None,
              help="tflite contract: default requantization rounding of the emitted project (ESC2C_ROUNDING) "
                   "[default: the model's esc2c.rounding metadata, written by `esc2c compress`, else double]")
@click.option("--vectors", "n_vectors", type=click.IntRange(1, 256), default=8, show_default=True,
              help="test vectors compiled into the project (its ctest and firmware self-test)")
@click.option("--cmsis-nn", "cmsis_nn", default=None, type=click.Path(file_okay=False),
              help="CMSIS-NN checkout to build against (default: the sources in the bakenn package)")
@click.option("--frontend/--no-frontend", default=None,
              help="generate the log-mel front end in C from the model's FeatureSpec (default: when the model "
                   "has one in its metadata)")
@click.option("--audio", "audio", multiple=True, type=click.Path(dir_okay=False, exists=True),
              help="audio file compiled in as a PCM test clip of the front end (repeatable)")
@click.option("--kernels", type=click.Choice(["fast", "cmsis"]), default="fast", show_default=True,
              help="convolution kernels: fast = the project's (int16 weights in flash unless --max-flash or the "
                   "board asks for int8 ones, ~2x fewer instructions "
                   "on Cortex-M7), cmsis = CMSIS-NN's arm_convolve_wrapper_s8 (the reference path)")
@click.option("--fuse", type=click.Choice(["auto", "all", "none"]), default="auto", show_default=True,
              help="conv -> pool pairs run band-wise, never storing the conv's whole output: auto = when the "
                   "arena gets smaller, all = every such pair, none = every op as in the model")
@click.option("--max-flash", type=click.IntRange(min=1), default=None,
              help="bytes of flash the firmware may take [default: the board's]: fast convolutions read int8 "
                   "weights (1.5 more instructions per 12 MACs) where their int16 ones do not fit, the least "
                   "speed per byte first")
@click.option("--force", is_flag=True, default=False,
              help="replace OUT even when another esc2c command wrote it (never a directory of other files)")
def emit_cmd(model, out, board, contract, rounding, n_vectors, cmsis_nn, frontend, audio, kernels, fuse, max_flash,
             force):
    """Compile an INT8 QDQ ONNX MODEL to C calling CMSIS-NN, with a CMake project in OUT."""

    r = emit(model, out, board=board, rounding=rounding, n_vectors=n_vectors, cmsis_nn_path=cmsis_nn,
             frontend=frontend, audio=audio, kernels=kernels, fuse=fuse, force=force, contract=contract,
             max_flash=max_flash)
    meta_contract = "onnxruntime" if r.rounding == "float" else f"tflite, {r.rounding} rounding"
    click.echo(f"contract: {meta_contract} ({r.rounding_source})")
    click.echo(r.summary())
    for note in r.notes:
        click.echo(f"note: {note}")
    if (r.out / "esc2c_frontend_config.h").is_file():
        click.echo(f"log-mel front end: esc2c_frontend_config.h, esc2c_frontend_tables.c, runtime/frontend/ "
                   f"(+ {1 + len(audio)} PCM test clip(s) in audio_vectors.h)")
    s = r.graph.plan_stats
    click.echo(f"arena peak {s['peak_bytes']} B vs sum of all tensors {s['sum_of_tensors_bytes']} B "
               f"({s['peak_bytes'] / max(1, s['sum_of_tensors_bytes']):.2f}x), {s['in_place_ops']} in-place ops, "
               f"{s['overlapped_ops']} outputs over their consumed inputs")
    est = costmodel.estimate(r.graph)
    click.echo("cost model, per layer (an ESTIMATE from shapes and kernels, not a measurement; "
               "`esc2c run --target qemu --profile` measures):")
    click.echo(est.table())
    if board:
        f = check_fit(r.graph, board, n_vectors)
        click.echo(f"{board}: flash {f['flash']} / {f['flash_limit']} B (estimate incl. code and {n_vectors} test "
                   f"vectors), RAM {f['ram']} / {f['ram_limit']} B (arena + stack and runtime)")


@click.command("verify")
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--n", "n", type=click.IntRange(1, 100000), default=20, show_default=True, help="random int8 inputs")
@click.option("--rounding", type=click.Choice(ROUNDING_MODES), default=None,
              help="tflite contract: rounding of the host build [default: the one OUT was emitted with; a "
                   "project emitted for the onnxruntime contract is verified in it]")
@click.option("--seed", type=int, default=1234, show_default=True)
@click.option("--features", "n_features", type=click.IntRange(0, 10000), default=4, show_default=True,
              help="extra inputs: log-mel features of synthetic sound clips (models with an esc2c.feature_spec)")
@click.option("--qdq-tolerance", type=int, default=1, show_default=True,
              help="largest LSB difference of the logits allowed against the QDQ model in onnxruntime")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=600.0, show_default=True,
              help="seconds the host build of the model may take to run all inputs")
@click.option("--strict", is_flag=True, help="fail when a check could not run (e.g. tensorflow not installed)")
def verify_cmd(out, n, rounding, seed, n_features, qdq_tolerance, timeout, strict):
    """Build OUT's host variant and check it against onnxruntime, every tensor."""

    report = verify(out, n=n, rounding=rounding, seed=seed, qdq_tolerance=qdq_tolerance, n_features=n_features,
                    timeout=timeout, strict=strict)
    click.echo(report.text())
    if report.failed:
        c = report.failed[0]
        raise Esc2cError(f"verification failed: {c.name}: {c.detail}")
    if not report.ok:
        raise Esc2cError("verification incomplete (--strict): did not run: "
                         + "; ".join(f"{c.name} ({c.detail})" for c in report.not_run))
