"""Property-based fuzzing of the serial protocol: the host reader (esc2c.device.protocol) and the device
parser (boards/common/protocol.c built for the host with AddressSanitizer and UBSan) on random streams of
valid frames, noise, corrupted frames and fake headers; and the whole-request deadlines of SerialRunner.
The default run checks a few hundred streams; the slow profile (-m slow) checks over 100,000."""
from __future__ import annotations

import shutil
import struct
import subprocess
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from esc2c.device import protocol as P
from esc2c.device.boards import BOARDS_DIR
from esc2c.device.serial_runner import DeviceInfo, SerialRunner

from _fuzz import scaled
from _fuzz_streams import frames, requests, streams


class ChunkPort:
    """A port that hands out a byte string in given chunk sizes, then stays silent (read returns b"")."""

    def __init__(self, data: bytes, chunks=(7,)):
        self.data, self.pos, self.chunks, self.i = data, 0, list(chunks) or [7], 0
        self.timeout = 0.1
        self.written = bytearray()

    @property
    def in_waiting(self) -> int:
        return len(self.data) - self.pos

    def read(self, n: int) -> bytes:
        k = min(n, self.chunks[self.i % len(self.chunks)])
        self.i += 1
        out = self.data[self.pos:self.pos + k]
        self.pos += len(out)
        return out

    def write(self, b: bytes) -> int:
        self.written += b
        return len(b)

    def flush(self) -> None:
        pass


def read_all(stream: bytes, chunks, max_payload: int) -> list[P.Frame]:
    """Every frame the reader returns until the stream is used up and no unfinished frame is pending
    (a pending one is given up after the reader's frame gap, here 1 ms)."""
    port = ChunkPort(stream, chunks)
    reader = P.FrameReader(port, max_payload=max_payload, frame_gap=0.001)
    got = []
    t_end = time.monotonic() + 10.0
    while time.monotonic() < t_end:
        try:
            got.append(reader.read_frame(0.0005))
        except P.ProtocolTimeout:
            if port.in_waiting == 0 and reader.buf[:2] != P.SYNC:
                return got
    raise AssertionError(f"the reader did not drain {len(stream)} bytes in 10 s")


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(streams(max_payload=64), st.lists(st.integers(1, 64), min_size=1, max_size=4))
def test_host_reader_finds_exactly_the_valid_frames(case, chunks):
    stream, expected, _ = case
    got = read_all(stream, chunks, max_payload=64)
    assert [P.encode_frame(f.type, f.seq, f.payload) for f in got] == expected


@pytest.mark.slow
@settings(max_examples=scaled(2_000), suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                    HealthCheck.large_base_example])
@given(st.lists(streams(max_payload=64), min_size=50, max_size=50), st.lists(st.integers(1, 64), min_size=1, max_size=4))
def test_host_reader_fuzz_many(batch, chunks):
    # 2,000 examples x 50 streams = 100,000 streams
    for stream, expected, _ in batch:
        got = read_all(stream, chunks, max_payload=64)
        assert [P.encode_frame(f.type, f.seq, f.payload) for f in got] == expected, stream.hex()


# ---- the device parser under ASan/UBSan: many streams per process --------------------------------------

DRIVER = r"""
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include "protocol.h"
#include "board.h"
const char board_name[] = "host";
void board_serial_putc(uint8_t b) { (void)b; }
static void report(esc2c_rx_t *rx) {
    printf("F %u %u %u\n", esc2c_rx_type(rx), esc2c_rx_seq(rx), esc2c_rx_length(rx));
    const uint8_t *p = esc2c_rx_payload(rx);
    for (uint32_t i = 0; i < esc2c_rx_length(rx); i++) printf("%02x", p[i]);
    printf("\n");
    esc2c_rx_done(rx);
}
int main(void) {
    static uint8_t buf[8 + 64 + 4];
    uint8_t len4[4];
    while (fread(len4, 1, 4, stdin) == 4) {
        uint32_t n = (uint32_t)len4[0] | (uint32_t)len4[1] << 8 | (uint32_t)len4[2] << 16 | (uint32_t)len4[3] << 24;
        uint8_t *s = malloc(n ? n : 1);
        if (!s || fread(s, 1, n, stdin) != n) return 2;
        esc2c_rx_t rx;
        esc2c_rx_init(&rx, buf, sizeof(buf));
        for (uint32_t i = 0; i < n; i++) if (esc2c_rx_feed(&rx, s[i])) report(&rx);
        /* the line goes quiet: give up unfinished frames until none is pending */
        for (int k = 0; k < 100000 && esc2c_rx_in_frame(&rx); k++) if (esc2c_rx_abort(&rx)) report(&rx);
        printf("E\n");
        free(s);
    }
    return 0;
}
"""


@pytest.fixture(scope="module")
def sanitized_parser(tmp_path_factory):
    if shutil.which("gcc") is None:
        pytest.fail("gcc is required to build boards/common/protocol.c for the host")
    d = tmp_path_factory.mktemp("proto_asan")
    (d / "driver.c").write_text(DRIVER)
    common = BOARDS_DIR / "common"
    exe = d / "driver"
    subprocess.run(["gcc", "-std=c99", "-O1", "-g", "-Wall", "-Wextra", "-Werror", "-fsanitize=address,undefined",
                    "-fno-sanitize-recover=all", f"-I{common}", str(d / "driver.c"), str(common / "protocol.c"),
                    str(common / "crc32.c"), "-o", str(exe)], check=True, timeout=300)

    def feed(batch: list[bytes]) -> list[list[bytes]]:
        data = b"".join(struct.pack("<I", len(s)) + s for s in batch)
        r = subprocess.run([str(exe)], input=data, capture_output=True, timeout=120)
        assert r.returncode == 0 and not r.stderr, r.stderr.decode()[-3000:]
        out, cur, lines = [], [], r.stdout.decode().splitlines()
        i = 0
        while i < len(lines):
            if lines[i] == "E":
                out.append(cur)
                cur = []
                i += 1
            else:
                t, seq, n = (int(v) for v in lines[i].split()[1:])
                cur.append(P.encode_frame(t, seq, bytes.fromhex(lines[i + 1])))
                assert len(bytes.fromhex(lines[i + 1])) == n
                i += 2
        assert len(out) == len(batch)
        return out
    return feed


def _is_subsequence(found: list[bytes], expected: list[bytes]) -> bool:
    it = iter(expected)
    return all(any(f == e for e in it) for f in found)


def _device_case(mixed, requests_, sanitized_parser):
    """Mixed streams: the frames found are put-in frames, in order (bytes after a frame recovered from a
    rescan are dropped by design: the host waits for each answer), all of them when no junk holds a sync
    pair. Request streams (junk, then one frame): exactly that frame."""
    got = sanitized_parser([s for s, _, _ in mixed] + [s for s, _ in requests_])
    for (stream, expected, synced), found in zip(mixed, got):
        assert _is_subsequence(found, expected), stream.hex()
        assert synced or found == expected, stream.hex()
    for (stream, frame), found in zip(requests_, got[len(mixed):]):
        assert found == [frame], stream.hex()


@settings(max_examples=10, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.lists(streams(max_payload=64), min_size=1, max_size=25),
       st.lists(requests(max_payload=64), min_size=1, max_size=25))
def test_device_parser_under_sanitizers_finds_the_valid_frames(sanitized_parser, mixed, reqs):
    _device_case(mixed, reqs, sanitized_parser)


@pytest.mark.slow
@settings(max_examples=scaled(2_000), suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.lists(streams(max_payload=64), min_size=25, max_size=25),
       st.lists(requests(max_payload=64), min_size=25, max_size=25))
def test_device_parser_under_sanitizers_fuzz_many(sanitized_parser, mixed, reqs):
    _device_case(mixed, reqs, sanitized_parser)


# ---- whole-request deadlines --------------------------------------------------------------------------

class EndlessDevice(ChunkPort):
    """Answers every request with an endless run of frames that are never the reply."""

    def __init__(self, frame_for):
        super().__init__(b"")
        self.frame_for = frame_for
        self.seq = 0

    def write(self, b: bytes) -> int:
        self.seq = b[3]                 # the sequence number of the request just sent
        return super().write(b)

    def read(self, n: int) -> bytes:
        time.sleep(0.001)
        return self.frame_for(self.seq)


def _ping_info(seq: int) -> bytes:
    fields = [P.VERSION, 8, 2, 1, 0, 64, 1000, 0, 0, 0, 0]
    return P.encode_frame(P.MSG_INFO, seq, struct.pack("<11I", *fields) + b"fake")


@pytest.mark.parametrize("kind", ["stale", "layers"])
def test_request_deadline_holds_against_endless_frames(kind):
    port = EndlessDevice(lambda seq: P.encode_frame(P.MSG_INFO, (seq + 1) & 0xFF, b"x") if kind == "stale"
                         else P.encode_frame(P.MSG_LAYER, seq, struct.pack("<I", 0) + b"\x01\x02"))
    runner = SerialRunner(port, timeout=0.5, retries=1)
    if kind == "layers":
        runner.info = DeviceInfo(1, 8, 2, 1, 0, 64, 1000, False, 0, 0, 0, "fake")
    t0 = time.monotonic()
    with pytest.raises(P.ProtocolTimeout, match=r"after 2 attempt\(s\) of at most 0.5 s"):
        runner.hello() if kind == "stale" else runner.run(np.zeros(8, np.int8), layers=True)
    assert time.monotonic() - t0 < 3.0


def test_fake_long_header_does_not_hide_the_reply():
    # a header claiming 1 MiB (under the 16 MiB limit) in front of the real reply: the reply comes through
    fake = P.SYNC + struct.pack("<BBI", P.MSG_RESULT, 1, 1 << 20)

    class Device(ChunkPort):
        def write(self, b: bytes) -> int:
            super().write(b)
            self.data += fake + _ping_info(b[3])
            return len(b)

    runner = SerialRunner(Device(b""), timeout=5.0, retries=0)
    runner.reader.frame_gap = 0.2
    runner.reader.max_payload = P.DEFAULT_MAX_PAYLOAD   # even with the largest allowed length
    t0 = time.monotonic()
    info = runner.hello()
    assert info.board == "fake" and time.monotonic() - t0 < 2.0
    assert runner.reader.stats.bad_frames >= 1


def test_truncated_frame_completed_by_the_next_sync_byte_is_a_frame():
    """Found by the slow fuzz run: a frame cut just before its last CRC byte, when that byte is 0xA5, is
    completed by the sync pair of whatever follows; the reader rightly returns it (and the stream generator
    now cuts truncated frames before their CRC)."""
    f = next(P.encode_frame(P.MSG_RESULT, s, bytes([k])) for s in range(256) for k in range(256)
             if P.encode_frame(P.MSG_RESULT, s, bytes([k]))[-1] == 0xA5)
    nxt = P.encode_frame(P.MSG_INFO, 9, b"abc")
    got = read_all(f[:-1] + nxt, (5,), max_payload=64)
    assert [P.encode_frame(x.type, x.seq, x.payload) for x in got] == [f]      # the next frame lost its sync


def test_short_polls_still_give_up_a_corrupted_header():
    """The silence that gives up an unfinished header is counted across read_frame calls: a caller that polls
    with timeouts shorter than the frame gap (as the fuzz harness does) still gets the frame behind it."""
    good = P.encode_frame(P.MSG_RESULT, 7, b"ok")
    fake = P.SYNC + struct.pack("<BBI", P.MSG_RESULT, 1, 60)     # claims 60 bytes; only the good frame follows
    reader = P.FrameReader(ChunkPort(fake + good, (5,)), max_payload=64, frame_gap=0.05)
    got, t_end = [], time.monotonic() + 3.0
    while not got and time.monotonic() < t_end:
        try:
            got.append(reader.read_frame(0.01))
        except P.ProtocolTimeout:
            pass
    assert [(f.type, f.seq, f.payload) for f in got] == [(P.MSG_RESULT, 7, b"ok")]
    assert reader.stats.bad_frames >= 1


def test_reader_refuses_frames_longer_than_an_info_before_hello():
    runner = SerialRunner(ChunkPort(b""), timeout=0.1)
    assert runner.reader.max_payload == P.MAX_INFO_PAYLOAD


@given(frames(max_payload=200))
def test_encode_then_read_round_trips(frame):
    got = read_all(frame, [3], max_payload=256)
    assert [P.encode_frame(f.type, f.seq, f.payload) for f in got] == [frame]
