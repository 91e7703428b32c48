"""`esc2c run` and `esc2c flash`."""
from __future__ import annotations

import click

from esc2c.device.flash import flash
from esc2c.device.runner import run_qemu, run_serial
from esc2c.errors import Esc2cError


@click.command("run")
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--target", type=click.Choice(["qemu"]), default=None,
              help="Run on QEMU mps2-an500 (Cortex-M7) instead of a board on --port.")
@click.option("--port", default=None, help="Serial port (or pyserial URL) of a board running the firmware.")
@click.option("--baud", default=115200, show_default=True, help="Baud rate for --port.")
@click.option("--vectors", "vectors", default=50, show_default=True, type=click.IntRange(1, 100000),
              help="Inputs to run: the compiled-in test vectors first, then seeded random int8 inputs.")
@click.option("--seed", default=0, show_default=True, help="Seed of the random inputs.")
@click.option("--profile", is_flag=True, help="QEMU: per-layer instruction counts (table, profile.json, profile.png).")
@click.option("--profile-dir", type=click.Path(file_okay=False), default=None,
              help="Where profile.json/png go (default OUT/profile).")
@click.option("--debug-layers", is_flag=True, help="Compare every layer's output too, not only the logits.")
@click.option("--timeout", default=600.0, show_default=True, help="Seconds for each host run, the whole QEMU run, and each serial request.")
def run_cmd(out, target, port, baud, vectors, seed, profile, profile_dir, debug_layers, timeout):
    """Run an emitted project's firmware on QEMU or a board and check it gives the host build's bits."""

    if (target is None) == (port is None):
        raise Esc2cError("give exactly one of --target qemu or --port PORT")
    if target == "qemu":
        run_qemu(out, vectors=vectors, profile=profile, debug_layers=debug_layers, timeout=timeout, seed=seed,
                 profile_dir=profile_dir, echo=click.echo)
    else:
        if profile:
            raise Esc2cError("--profile counts instructions on QEMU; on a board the per-layer cycles are printed anyway")
        run_serial(out, port, vectors=vectors, debug_layers=debug_layers, baudrate=baud,
                   timeout=min(timeout, 60.0), seed=seed, echo=click.echo, host_timeout=timeout)


@click.command("flash")
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--probe", type=click.Choice(["pyocd", "st-flash", "openocd"]), default=None,
              help="Flashing tool (default: the first one installed).")
@click.option("--pyocd-target", default=None, help="pyOCD target type, if it does not detect the Nucleo itself.")
def flash_cmd(out, probe, pyocd_target):
    """Build the STM32F746ZG firmware of an emitted project and flash it to a Nucleo-F746ZG."""

    flash(out, probe=probe, pyocd_target=pyocd_target, echo=click.echo)
