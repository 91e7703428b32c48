"""``python -m esc2c`` (and ``torchrun ... -m esc2c``): the esc2c command line."""
import sys

from esc2c.cli import main

sys.exit(main())
