"""Child processes with a deadline: every build, host run and tool call goes through :func:`run`, which
kills the whole process group when the time is up and names what hung with the last lines of its output."""
from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass

from esc2c.errors import Esc2cError

BUILD_TIMEOUT = float(os.environ.get("ESC2C_BUILD_TIMEOUT", "1800"))   # seconds for one configure or build step


@dataclass
class Result:
    returncode: int
    stdout: bytes
    stderr: bytes

    @property
    def out(self) -> str:
        return self.stdout.decode("utf-8", "replace")

    @property
    def err(self) -> str:
        return self.stderr.decode("utf-8", "replace")


def tail(text: str | bytes, lines: int = 15) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return "\n".join(text.strip().splitlines()[-lines:])


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()


def run(cmd: list[str], what: str, timeout: float, stdin: bytes | None = None, cwd=None,
        merge_stderr: bool = False, env: dict | None = None) -> Result:
    """Run ``cmd`` (its own process group) for at most ``timeout`` seconds. A timeout raises Esc2cError
    naming ``what``, the limit and the last lines of its output; so does a missing program."""
    try:
        proc = subprocess.Popen([str(c) for c in cmd], stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                                stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
                                cwd=cwd, env=env, start_new_session=True)
    except OSError as e:
        raise Esc2cError(f"{what}: cannot start {cmd[0]} ({e.strerror or e})") from None
    try:
        out, err = proc.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        out, err = proc.communicate()
        shown = tail((out or b"") + b"\n" + (err or b""))
        raise Esc2cError(f"{what} did not finish within {timeout:g} s and was stopped; last output:\n"
                         f"{shown or '(none)'}") from None
    except BaseException:
        _kill_group(proc)
        proc.wait()
        raise
    return Result(proc.returncode, out or b"", err or b"")
