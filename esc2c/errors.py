"""One exception type for user-facing errors: the CLI prints its message on one line and exits 1."""


class Esc2cError(Exception):
    """A clear, one-line error about the user's input (file, node or field, and what is wrong)."""
