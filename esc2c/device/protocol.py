"""The esc2c serial protocol, host side (boards/common/protocol.{h,c} is the device side).

Frame: ``A5 5A | type u8 | seq u8 | length u32 LE | payload | crc32 u32 LE``; the CRC (zlib's CRC-32)
covers type, seq, length and payload. The reader skips bytes until the sync pair, rejects a length above
its limit at once, and on a bad CRC resumes the search one byte after the rejected sync, so garbage on
the line costs only the garbage. It counts what it skipped so a runner can report it.
"""
from __future__ import annotations

import struct
import time
import zlib
from dataclasses import dataclass

from esc2c.errors import Esc2cError

SYNC = b"\xa5\x5a"
HEADER = struct.Struct("<2sBBI")  # sync, type, seq, length
CRC = struct.Struct("<I")
VERSION = 1

MSG_PING, MSG_RUN, MSG_RUN_LAYERS, MSG_BYE = 0x01, 0x02, 0x03, 0x04
MSG_INFO, MSG_RESULT, MSG_LAYER, MSG_BYE_ACK, MSG_ERROR = 0x81, 0x82, 0x83, 0x84, 0xFF
MSG_NAMES = {MSG_PING: "PING", MSG_RUN: "RUN", MSG_RUN_LAYERS: "RUN_LAYERS", MSG_BYE: "BYE", MSG_INFO: "INFO",
             MSG_RESULT: "RESULT", MSG_LAYER: "LAYER", MSG_BYE_ACK: "BYE_ACK", MSG_ERROR: "ERROR"}
ERROR_CODES = {1: "bad length", 2: "unknown message type", 3: "model error"}

DEFAULT_MAX_PAYLOAD = 16 << 20
MAX_INFO_PAYLOAD = 44 + 256          # an INFO frame: 11 u32 fields and the board name
FRAME_GAP_S = 1.0                    # a frame whose bytes stop arriving for this long is abandoned


class ProtocolTimeout(Esc2cError):
    """No complete, valid frame arrived in time."""


class LinkError(Esc2cError):
    """The serial port itself failed (device unplugged, emulator gone)."""


class DeviceError(Esc2cError):
    """The device answered with an ERROR frame or something that breaks the protocol."""


@dataclass(frozen=True)
class Frame:
    type: int
    seq: int
    payload: bytes

    @property
    def name(self) -> str:
        return MSG_NAMES.get(self.type, f"0x{self.type:02x}")


def encode_frame(msg_type: int, seq: int, payload: bytes = b"") -> bytes:
    body = struct.pack("<BBI", msg_type, seq & 0xFF, len(payload)) + bytes(payload)
    return SYNC + body + CRC.pack(zlib.crc32(body))


@dataclass
class ReaderStats:
    garbage_bytes: int = 0
    bad_frames: int = 0
    frames: int = 0

    def describe(self) -> str:
        return f"{self.frames} valid frames, {self.garbage_bytes} garbage bytes skipped, {self.bad_frames} bad frames"


class FrameReader:
    """Reads frames from a pyserial-like port (``read(n)`` honouring ``port.timeout``)."""

    def __init__(self, port, max_payload: int = DEFAULT_MAX_PAYLOAD, frame_gap: float = FRAME_GAP_S):
        self.port = port
        self.max_payload = max_payload
        self.frame_gap = frame_gap
        self.buf = bytearray()
        self.stats = ReaderStats()
        # when the line last went silent (a read that returned nothing; None while bytes keep coming). Kept
        # across read_frame calls, so a caller polling with timeouts shorter than frame_gap still gives up a
        # corrupted header
        self.quiet_since: float | None = None

    def _parse(self) -> Frame | None:
        while True:
            start = self.buf.find(SYNC)
            if start < 0:
                keep = 1 if self.buf[-1:] == SYNC[:1] else 0
                self.stats.garbage_bytes += len(self.buf) - keep
                del self.buf[: len(self.buf) - keep]
                return None
            if start:
                self.stats.garbage_bytes += start
                del self.buf[:start]
            if len(self.buf) < HEADER.size:
                return None
            _, msg_type, seq, length = HEADER.unpack_from(self.buf)
            if length > self.max_payload:
                self._reject()
                continue
            total = HEADER.size + length + CRC.size
            if len(self.buf) < total:
                return None
            body = bytes(self.buf[2 : HEADER.size + length])
            (crc,) = CRC.unpack_from(self.buf, HEADER.size + length)
            if crc != zlib.crc32(body):
                self._reject()
                continue
            del self.buf[:total]
            self.stats.frames += 1
            return Frame(msg_type, seq, body[6:])

    def _reject(self) -> None:
        self.stats.bad_frames += 1
        self.stats.garbage_bytes += 1
        del self.buf[:1]

    def read_frame(self, timeout: float) -> Frame:
        """The next valid frame, or ProtocolTimeout when none is complete within ``timeout`` seconds. A
        header whose frame stops growing for ``frame_gap`` seconds (a corrupted length) is given up, so the
        frames after it are still found."""
        deadline = time.monotonic() + timeout
        while True:
            frame = self._parse()
            if frame is not None:
                return frame
            now = time.monotonic()
            if self.buf[:2] == SYNC and self.quiet_since is not None and now - self.quiet_since >= self.frame_gap:
                self._reject()             # an unfinished frame with a silent line: rescan what follows it
                self.quiet_since = now
                continue
            left = deadline - now
            if left <= 0:
                raise ProtocolTimeout(f"no complete frame within {timeout:g} s ({self.stats.describe()}, "
                                      f"{len(self.buf)} bytes of an unfinished frame pending)")
            self.port.timeout = max(0.001, min(left, 0.2, self.frame_gap))
            try:
                waiting = getattr(self.port, "in_waiting", 0) or 1
            except (OSError, ValueError):
                waiting = 1
            t_read = time.monotonic()
            try:
                chunk = self.port.read(max(1, min(waiting, 65536)))
            except (OSError, ValueError) as e:  # serial.SerialException is an OSError
                raise LinkError(f"serial link lost while waiting for a frame: {e}") from None
            if chunk:
                self.buf += chunk
                self.quiet_since = None
            elif self.quiet_since is None:
                self.quiet_since = t_read


def decode_u32s(payload: bytes, count: int, what: str) -> tuple[int, ...]:
    if len(payload) < 4 * count:
        raise DeviceError(f"{what} payload is {len(payload)} bytes, expected at least {4 * count}")
    return struct.unpack_from(f"<{count}I", payload)
