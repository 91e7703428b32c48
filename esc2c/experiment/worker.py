"""A worker process of ``esc2c experiment --jobs N``: ``python -m esc2c.experiment.worker DIR --cells a,b,...``
reads {"config": base config dict, "threads": n} on stdin and runs the cells it can claim (see
:func:`esc2c.experiment.grid.work`). Exit status 0 when every cell it took finished, 1 on an error."""
from __future__ import annotations

import argparse
import json
import sys

from esc2c.compress.config import CompressConfig
from esc2c.errors import Esc2cError
from esc2c.experiment.grid import Cell, work


def _log(msg: str) -> None:
    print(msg, flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m esc2c.experiment.worker", description=__doc__.splitlines()[0])
    ap.add_argument("out_dir")
    ap.add_argument("--cells", required=True, help="cell names in the order to try them")
    args = ap.parse_args(argv)
    try:
        job = json.loads(sys.stdin.read())
        base = CompressConfig(**job["config"]).validate()
        cells = [Cell.parse(n) for n in args.cells.split(",") if n]
        work(args.out_dir, base, cells, int(job["threads"]), _log, int(job.get("cell_procs", 1)))
    except Esc2cError as e:
        print(f"esc2c experiment worker: error: {e}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
