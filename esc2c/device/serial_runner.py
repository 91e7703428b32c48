"""Drive esc2c firmware over a serial line (a Nucleo's /dev/ttyACM0, or QEMU's UART through
``socket://host:port``) with the framed protocol of esc2c.device.protocol."""
from __future__ import annotations

import struct
import time
from dataclasses import dataclass, field

import numpy as np
import serial

from esc2c.device import protocol as P
from esc2c.errors import Esc2cError


@dataclass(frozen=True)
class DeviceInfo:
    version: int
    input_size: int
    output_size: int
    num_layers: int
    num_test_vectors: int
    arena_size: int
    core_hz: int
    cycles_available: bool
    bad_frames: int
    garbage_bytes: int
    rx_timeouts: int
    board: str


@dataclass
class RunResult:
    output: np.ndarray                  # int8 [output_size]
    status: int
    cycles: int | None                  # None where the target has no cycle counter (QEMU)
    layer_cycles: list[int] | None
    layers: list[np.ndarray] = field(default_factory=list)  # int8 outputs per layer (debug runs)


def open_port(port: str, baudrate: int = 115200, timeout: float = 0.2):
    """A pyserial port for a device path or any pyserial URL (socket://, loop://, rfc2217://...)."""

    try:
        return serial.serial_for_url(port, baudrate=baudrate, timeout=timeout)
    except (serial.SerialException, OSError, ValueError) as e:
        raise Esc2cError(f"cannot open serial port {port}: {e}") from e


class SerialRunner:
    """Request/response session with the firmware. Each request carries a sequence number; replies to
    other numbers (late answers to a request that timed out) are skipped. A request whose reply is not
    complete ``timeout`` seconds after it was sent (however many other frames arrive meanwhile) is sent
    again ``retries`` times before ProtocolTimeout is raised; ``deadline`` (time.monotonic()) bounds the
    whole session. Until the device has described itself (INFO), frames longer than an INFO are refused."""

    def __init__(self, port, timeout: float = 10.0, retries: int = 1, deadline: float | None = None):
        self.port = port
        self.timeout = timeout
        self.retries = retries
        self.deadline = deadline
        self.reader = P.FrameReader(port, max_payload=P.MAX_INFO_PAYLOAD)
        self.seq = 0
        self.stale_frames = 0
        self.retried = 0
        self.info: DeviceInfo | None = None

    # -- transport ---------------------------------------------------------------------------------
    def _send(self, msg_type: int, payload: bytes = b"") -> int:
        self.seq = (self.seq + 1) & 0xFF
        try:
            self.port.write(P.encode_frame(msg_type, self.seq, payload))
            self.port.flush()
        except (OSError, ValueError) as e:  # serial.SerialException is an OSError
            raise P.LinkError(f"serial link lost while sending {P.MSG_NAMES[msg_type]}: {e}") from None
        return self.seq

    def _request(self, msg_type: int, payload: bytes, reply_type: int, on_frame=None) -> P.Frame:
        name = P.MSG_NAMES[msg_type]
        for attempt in range(self.retries + 1):
            seq = self._send(msg_type, payload)
            until = time.monotonic() + self.timeout
            if self.deadline is not None:
                until = min(until, self.deadline)
            try:
                while True:
                    frame = self.reader.read_frame(until - time.monotonic())
                    if frame.seq != seq:
                        self.stale_frames += 1
                        continue
                    if frame.type == P.MSG_ERROR:
                        code = struct.unpack_from("<I", frame.payload)[0] if len(frame.payload) >= 4 else -1
                        text = frame.payload[4:].decode("ascii", "replace")
                        raise P.DeviceError(f"device rejected {name}: {P.ERROR_CODES.get(code, code)} ({text})")
                    if frame.type == reply_type:
                        return frame
                    if on_frame is not None and on_frame(frame):
                        continue
                    raise P.DeviceError(f"device answered {name} with an unexpected {frame.name} frame")
            except P.ProtocolTimeout as e:
                if attempt == self.retries or (self.deadline is not None and time.monotonic() >= self.deadline):
                    raise P.ProtocolTimeout(f"no reply to {name} (seq {seq}) after {attempt + 1} attempt(s) of "
                                            f"at most {self.timeout:g} s ({self.stale_frames} frames of other "
                                            f"requests skipped): {e}") from None
                self.retried += 1
        raise AssertionError("unreachable")

    # -- messages ----------------------------------------------------------------------------------
    def hello(self) -> DeviceInfo:
        frame = self._request(P.MSG_PING, b"", P.MSG_INFO)
        f = P.decode_u32s(frame.payload, 11, "INFO")
        if f[0] != P.VERSION:
            raise P.DeviceError(f"device speaks protocol version {f[0]}, this esc2c speaks {P.VERSION}")
        self.info = DeviceInfo(f[0], f[1], f[2], f[3], f[4], f[5], f[6], bool(f[7] & 1), f[8], f[9], f[10],
                               frame.payload[44:].decode("ascii", "replace"))
        # The device's largest frame is a layer output; let the reader accept what a model can produce.
        self.reader.max_payload = max(self.reader.max_payload, 4 + 4 * (f[3] + 3) + f[5] + f[1] + f[2])
        return self.info

    def run(self, input_tensor, layers: bool = False) -> RunResult:
        info = self.info or self.hello()
        x = np.ascontiguousarray(input_tensor, dtype=np.int8).ravel()
        if x.size != info.input_size:
            raise Esc2cError(f"input has {x.size} elements, the model on the device takes {info.input_size}")
        got_layers: dict[int, np.ndarray] = {}

        def on_layer(frame: P.Frame) -> bool:
            if frame.type != P.MSG_LAYER:
                return False
            (index,) = P.decode_u32s(frame.payload, 1, "LAYER")
            got_layers[index] = np.frombuffer(frame.payload[4:], dtype=np.int8).copy()
            return True

        frame = self._request(P.MSG_RUN_LAYERS if layers else P.MSG_RUN, x.tobytes(), P.MSG_RESULT, on_layer)
        n = info.num_layers
        head = P.decode_u32s(frame.payload, 3 + n, "RESULT")
        status, flags, total = head[0], head[1], head[2]
        output = np.frombuffer(frame.payload[4 * (3 + n):], dtype=np.int8).copy()
        if output.size != info.output_size:
            raise P.DeviceError(f"RESULT carries {output.size} output bytes, expected {info.output_size}")
        if layers and sorted(got_layers) != list(range(n)):
            raise P.DeviceError(f"debug run returned layers {sorted(got_layers)}, expected 0..{n - 1}")
        has_cycles = bool(flags & 1)
        return RunResult(output=output, status=struct.unpack("<i", struct.pack("<I", status))[0],
                         cycles=total if has_cycles else None,
                         layer_cycles=list(head[3:3 + n]) if has_cycles else None,
                         layers=[got_layers[i] for i in range(n)] if layers else [])

    def bye(self) -> None:
        self._request(P.MSG_BYE, b"", P.MSG_BYE_ACK)

    def describe(self) -> str:
        return (f"{self.reader.stats.describe()}, {self.stale_frames} stale replies skipped, "
                f"{self.retried} request(s) re-sent")
