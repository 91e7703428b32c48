"""The ``esc2c`` command line. Each sub-command lives beside the stage it drives; this file only wires them."""
from __future__ import annotations

import sys

import click

from esc2c import __version__
from esc2c.errors import Esc2cError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="esc2c")
def cli():
    """esc2c: audio dataset -> compressed INT8 classifier -> verified C for the STM32F746ZG."""


def _register() -> None:
    from esc2c.compiler.cli import emit_cmd, verify_cmd
    from esc2c.compress.cli import compress
    from esc2c.data.cli import datasets
    from esc2c.experiment.cli import experiment
    from esc2c.logmel.cli import audio_cmd
    from esc2c.quant.debug_cli import qdebug_cmd
    from esc2c.device.cli import flash_cmd, run_cmd

    cli.add_command(datasets)
    cli.add_command(compress)
    cli.add_command(experiment)
    cli.add_command(run_cmd)
    cli.add_command(flash_cmd)
    cli.add_command(emit_cmd)
    cli.add_command(verify_cmd)
    cli.add_command(audio_cmd)
    cli.add_command(qdebug_cmd)


_register()


def main(argv=None) -> int:
    try:
        cli.main(args=argv, prog_name="esc2c", standalone_mode=False)
    except Esc2cError as e:
        click.echo(f"esc2c: error: {e}", err=True)
        return 1
    except click.exceptions.Abort:
        click.echo("esc2c: aborted", err=True)
        return 130
    except click.ClickException as e:
        e.show()
        return e.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
