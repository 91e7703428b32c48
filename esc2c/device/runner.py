"""`esc2c run`: the test vectors (and more inputs) through the firmware on QEMU or a real board, compared
bit for bit with the host build of the same model code; optionally every layer, and a per-layer
instruction profile on QEMU."""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from esc2c import proc
from esc2c.errors import Esc2cError
from esc2c.device import profile as prof
from esc2c.device import protocol as P
from esc2c.device.build import build_firmware, build_host_runner, check_project, elf_functions, elf_symbol
from esc2c.device.qemu import QemuSession
from esc2c.device.serial_runner import RunResult, SerialRunner, open_port


@dataclass
class ModelInfo:
    input_size: int
    output_size: int
    num_layers: int
    arena_size: int
    num_test_vectors: int
    layer_names: list[str]
    layer_macs: list[int]


def _hex_rows(text: str, tag: str) -> dict[tuple[int, ...], np.ndarray]:
    """Lines "@tag k1 [k2 ...] HEX" -> {(k1, ...): int8 array}."""
    rows = {}
    for line in text.splitlines():
        if line.startswith(tag + " "):
            parts = line.split()
            rows[tuple(int(p) for p in parts[1:-1])] = np.frombuffer(bytes.fromhex(parts[-1]), dtype=np.int8).copy()
    return rows


class HostReference:
    """The host build of the model (boards/common/host_main.c + the project's esc2c_model)."""

    def __init__(self, exe: Path, timeout: float = 600.0):
        self.exe = exe
        self.timeout = timeout
        text = self._call(["info"])
        model = [ln.split() for ln in text.splitlines() if ln.startswith("@model ")][0]
        names, macs = [], []
        for line in text.splitlines():
            if line.startswith("@layer_info "):
                _, _, m, name = line.split(maxsplit=3)
                macs.append(int(m))
                names.append(name)
        self.info = ModelInfo(*(int(v) for v in model[1:6]), names, macs)

    def _call(self, args: list[str], stdin: bytes = b"") -> str:
        r = proc.run([str(self.exe), *args], f"host runner {self.exe} {' '.join(args)}", self.timeout, stdin=stdin)
        if r.returncode != 0:
            raise Esc2cError(f"host runner {self.exe} {' '.join(args)} failed (exit code {r.returncode}): "
                             f"{proc.tail(r.err, 5)}")
        return r.out

    def test_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        text = self._call(["dump"])
        ins, exp = _hex_rows(text, "@in"), _hex_rows(text, "@expect")
        n = self.info.num_test_vectors
        empty_in = np.zeros((0, self.info.input_size), np.int8)
        empty_out = np.zeros((0, self.info.output_size), np.int8)
        return (np.stack([ins[(i,)] for i in range(n)]) if n else empty_in,
                np.stack([exp[(i,)] for i in range(n)]) if n else empty_out)

    def run(self, inputs: np.ndarray, layers: bool = False) -> tuple[np.ndarray, list[list[np.ndarray]]]:
        inputs = np.ascontiguousarray(inputs, dtype=np.int8)
        text = self._call(["run"] + (["--layers"] if layers else []), inputs.tobytes())
        outs = {}
        for line in text.splitlines():
            if line.startswith("@out "):
                _, i, status, hexs = line.split()
                if int(status) != 0:
                    raise Esc2cError(f"host build: esc2c_model_run returned {status} on input {i}")
                outs[int(i)] = np.frombuffer(bytes.fromhex(hexs), dtype=np.int8).copy()
        n = len(inputs)
        per_layer = []
        if layers:
            rows = _hex_rows(text, "@layer")
            per_layer = [[rows[(i, l)] for l in range(self.info.num_layers)] for i in range(n)]
        return np.stack([outs[i] for i in range(n)]), per_layer


def make_inputs(test_inputs: np.ndarray, n: int, input_size: int, seed: int = 0) -> np.ndarray:
    """The compiled-in test inputs first, then seeded random int8 inputs up to n."""
    k = min(n, len(test_inputs))
    rng = np.random.default_rng(seed)
    extra = rng.integers(-128, 128, (n - k, input_size), dtype=np.int16).astype(np.int8)
    return np.concatenate([np.asarray(test_inputs[:k], np.int8).reshape(k, input_size), extra])


def first_difference(a: np.ndarray, b: np.ndarray) -> int | None:
    diff = np.flatnonzero(np.asarray(a).ravel() != np.asarray(b).ravel())
    return int(diff[0]) if diff.size else None


def _describe_vector(i: int, n_test: int) -> str:
    return f"vector {i} ({'compiled-in test vector' if i < n_test else f'random input {i - n_test}'})"


@dataclass
class RunReport:
    target: str
    vectors: int
    identical: int
    layers_checked: bool
    selftest: tuple[int, int] | None = None
    profile: prof.Profile | None = None
    cycles: list[int | None] = field(default_factory=list)
    layer_cycles: list[int] | None = None
    link_stats: str = ""


def _compare(report_target: str, info: ModelInfo, results: list[RunResult], host_out: np.ndarray,
             host_layers: list[list[np.ndarray]], n_test: int) -> int:
    """Raises on the first difference, naming vector, layer and element."""
    for i, r in enumerate(results):
        if r.status != 0:
            raise Esc2cError(f"{report_target}: esc2c_model_run returned {r.status} on {_describe_vector(i, n_test)}")
        if host_layers:
            for l, (dev, ref) in enumerate(zip(r.layers, host_layers[i])):
                if dev.shape != ref.shape:
                    raise Esc2cError(f"{report_target}: {_describe_vector(i, n_test)}, layer {l} "
                                     f"({info.layer_names[l]}) has {dev.size} bytes, host build {ref.size}")
                e = first_difference(dev, ref)
                if e is not None:
                    raise Esc2cError(f"{report_target} differs from the host build: {_describe_vector(i, n_test)}, "
                                     f"layer {l} ({info.layer_names[l]}), element {e} of {ref.size}: "
                                     f"{int(dev.ravel()[e])} vs {int(ref.ravel()[e])}")
        e = first_difference(r.output, host_out[i])
        if e is not None:
            bad = sum(first_difference(x.output, y) is not None for x, y in zip(results, host_out))
            raise Esc2cError(f"{report_target} differs from the host build: {_describe_vector(i, n_test)}, output "
                             f"element {e}: {int(r.output[e])} vs {int(host_out[i][e])} ({bad} of {len(results)} "
                             "vectors differ)")
    return len(results)


def _prepare(out, vectors: int, debug_layers: bool, seed: int, timeout: float = 600.0):
    out = check_project(out)
    host = HostReference(build_host_runner(out), timeout)
    info = host.info
    test_in, expected = host.test_vectors()
    host_test_out, _ = host.run(test_in) if len(test_in) else (expected, [])
    for i in range(len(test_in)):
        e = first_difference(host_test_out[i], expected[i])
        if e is not None:
            raise Esc2cError(f"{out / 'test_vectors.h'}: the host build gives {int(host_test_out[i][e])} at output "
                             f"element {e} of test vector {i}, the file expects {int(expected[i][e])} "
                             "(stale vectors or a different rounding mode)")
    inputs = make_inputs(test_in, vectors, info.input_size, seed)
    host_out, host_layers = host.run(inputs, layers=debug_layers)
    return out, host, info, test_in, expected, inputs, host_out, host_layers


def selftest_state(console: str, n_test: int) -> str:
    """Where the firmware's console says it got to, with its last lines (for a run that hung)."""
    printed = len(_hex_rows(console, "@vec"))
    tail = proc.tail(console, 8) or "(empty)"
    if not any(line.startswith("@selftest ") for line in console.splitlines()):
        return (f"the firmware's self-test never finished ({printed} of {n_test} test vectors printed; "
                f"a model that hangs or runs far slower than expected); console:\n{tail}")
    return f"the self-test finished, then the serial protocol got no answer; console:\n{tail}"


def _check_device(info: ModelInfo, dev, where: str) -> None:
    mine = (info.input_size, info.output_size, info.num_layers)
    theirs = (dev.input_size, dev.output_size, dev.num_layers)
    if mine != theirs:
        raise Esc2cError(f"{where} runs a different model: input/output/layers {theirs}, this project {mine} "
                         "(flash the firmware built from this project)")


def run_qemu(out, vectors: int = 50, profile: bool = False, debug_layers: bool = False, timeout: float = 600.0,
             seed: int = 0, profile_dir: str | Path | None = None,
             echo: Callable[[str], None] = print, build_type: str = "Release") -> RunReport:
    out, host, info, test_in, expected, inputs, host_out, host_layers = _prepare(out, vectors, debug_layers, seed,
                                                                                 timeout)
    fw = build_firmware(out, "mps2-an500", build_type=build_type)
    echo(f"firmware {fw.elf}: flash {fw.flash_bytes:,} / {fw.flash_limit:,} B, RAM {fw.ram_bytes:,} / "
         f"{fw.ram_limit:,} B")
    with tempfile.TemporaryDirectory(prefix="esc2c-qemu-") as tmp:
        log, ranges = Path(tmp) / "marks.txt", Path(tmp) / "functions.txt"
        mark, funcs = None, []
        if profile:
            mark = elf_symbol(fw.elf, "esc2c_profile_mark")
            funcs = elf_functions(fw.elf)
            ranges.write_text("".join(f"{lo:x} {hi:x}\n" for lo, hi, _ in funcs))
        with QemuSession(fw.elf, timeout=timeout, mark_addr=mark, profile_log=log, funcs_file=ranges if profile else None,
                         window=info.num_layers + 2) as q:
            port = q.connect()
            try:
                # one deadline for the whole session (the emulated UART loses nothing: no re-sends)
                runner = SerialRunner(port, timeout=max(0.1, q.remaining()), retries=0,
                                      deadline=q.started + timeout)
                dev = runner.hello()
                _check_device(info, dev, "QEMU firmware")
                results = [runner.run(x, layers=debug_layers) for x in inputs]
                runner.bye()
            except (P.LinkError, P.ProtocolTimeout) as e:
                if q.proc.poll() is not None or "fatal:" in q.console():
                    raise Esc2cError(f"QEMU firmware stopped during the serial session (exit code "
                                     f"{q.proc.poll()}): {e}; console:\n{q.console()[-1500:]}") from None
                raise Esc2cError(f"QEMU run of {fw.elf} timed out after {timeout:g} s: {e}; "
                                 f"{selftest_state(q.console(), len(expected))}") from None
            finally:
                port.close()
            code, console = q.finish()
        marks_text = log.read_text() if profile and log.is_file() else ""
    vec_rows = _hex_rows(console, "@vec")
    if any(line.startswith("fatal:") for line in console.splitlines()):
        raise Esc2cError(f"QEMU firmware faulted: {console.strip().splitlines()[-1]}")
    for i in range(len(expected)):
        row = next((v for k, v in vec_rows.items() if k[0] == i), None)
        if row is None:
            raise Esc2cError(f"QEMU firmware printed no output for test vector {i}; console:\n{console[-1500:]}")
        e = first_difference(row, expected[i])
        if e is not None:
            raise Esc2cError(f"QEMU self-test: test vector {i}, output element {e}: {int(row[e])}, expected "
                             f"{int(expected[i][e])}")
    if code != 0:
        raise Esc2cError(f"QEMU firmware exited with code {code}; console:\n{console[-1500:]}")
    n = _compare("QEMU Cortex-M7", info, results, host_out, host_layers, len(test_in))
    report = RunReport("qemu mps2-an500", n, n, bool(host_layers), (len(expected), len(expected)),
                       link_stats=runner.describe())
    echo(f"QEMU Cortex-M7: {n}/{n} vectors bit-identical to the host build"
         f"{' on every layer' if host_layers else ''}; self-test {len(expected)}/{len(expected)} passed")
    if profile:
        marks, _ = prof.parse_marks(marks_text)
        groups = prof.inference_marks(marks, info.num_layers)
        _, one_layers = host.run(inputs[:1], layers=True)
        sizes = [a.size for a in one_layers[0]]
        meta = prof.layer_meta(out, info.layer_names, sizes)
        # only the self-test inferences run without protocol traffic inside the layer hook
        clean = groups[:max(1, len(expected))]
        functions, unlisted = prof.parse_functions(marks_text, funcs)
        report.profile = prof.build_profile(clean, info.layer_names, info.layer_macs, meta, info.arena_size,
                                            fw.flash_bytes, fw.ram_bytes, functions, unlisted)
        echo(prof.format_table(report.profile))
        jpath, ppath = prof.write_profile(report.profile, profile_dir or out / "profile")
        echo(f"profile written to {jpath} and {ppath}")
    return report


def run_serial(out, port: str, vectors: int = 50, debug_layers: bool = False, baudrate: int = 115200,
               timeout: float = 20.0, seed: int = 0, echo: Callable[[str], None] = print,
               host_timeout: float = 600.0) -> RunReport:
    out, host, info, test_in, expected, inputs, host_out, host_layers = _prepare(out, vectors, debug_layers, seed,
                                                                                 host_timeout)
    ser = open_port(port, baudrate)
    try:
        runner = SerialRunner(ser, timeout=timeout)
        dev = runner.hello()
        _check_device(info, dev, f"the board on {port} ({dev.board})")
        results = [runner.run(x, layers=debug_layers) for x in inputs]
    finally:
        ser.close()
    n = _compare(dev.board, info, results, host_out, host_layers, len(test_in))
    echo(f"{dev.board}: {n}/{n} vectors bit-identical to the host build{' on every layer' if host_layers else ''}")
    report = RunReport(dev.board, n, n, bool(host_layers), link_stats=runner.describe(),
                       cycles=[r.cycles for r in results])
    if dev.cycles_available and results:
        # the first non-debug timing excludes the LAYER frame traffic
        r = results[0]
        report.layer_cycles = r.layer_cycles
        echo(f"{'#':>3} {'layer':<24} {'MACs':>11} {'cycles':>12} {'MAC/cycle':>9} {'ms':>8}")
        for l, (name, macs, cyc) in enumerate(zip(info.layer_names, info.layer_macs, r.layer_cycles)):
            echo(f"{l:>3} {name[:24]:<24} {macs:>11,} {cyc:>12,} {macs / cyc if cyc else 0:>9.2f} "
                 f"{cyc / dev.core_hz * 1e3:>8.2f}")
        cyc = sorted(c for c in report.cycles if c is not None)
        echo(f"whole inference: median {cyc[len(cyc) // 2]:,} cycles = {cyc[len(cyc) // 2] / dev.core_hz * 1e3:.2f} ms "
             f"at {dev.core_hz / 1e6:g} MHz (measured with DWT CYCCNT)")
    return report
