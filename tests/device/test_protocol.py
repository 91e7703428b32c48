"""The serial protocol: framing and CRC, resync after garbage and timeouts, on both the host side
(esc2c.device.protocol, SerialRunner) and the device side (boards/common/protocol.c built for the host)."""
from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
import zlib

import numpy as np
import pytest
import serial

from esc2c.device import protocol as P
from esc2c.device.boards import BOARDS_DIR
from esc2c.device.serial_runner import SerialRunner


def test_frame_layout_and_crc():
    frame = P.encode_frame(P.MSG_RUN, 7, b"\x01\x02\x03")
    assert frame[:2] == b"\xa5\x5a"
    assert frame[2:8] == bytes([P.MSG_RUN, 7, 3, 0, 0, 0])
    assert frame[8:11] == b"\x01\x02\x03"
    assert int.from_bytes(frame[11:], "little") == zlib.crc32(frame[2:11])


def _loop():
    return serial.serial_for_url("loop://", timeout=0.1)


def test_reader_skips_garbage_before_a_frame():
    port = _loop()
    garbage = bytes(np.random.default_rng(0).integers(0, 256, 300, dtype=np.uint8)).replace(b"\xa5\x5a", b"xx")
    port.write(garbage + P.encode_frame(P.MSG_INFO, 3, b"hello"))
    reader = P.FrameReader(port)
    frame = reader.read_frame(2.0)
    assert (frame.type, frame.seq, frame.payload) == (P.MSG_INFO, 3, b"hello")
    assert reader.stats.garbage_bytes == len(garbage)


def test_reader_recovers_a_frame_swallowed_by_a_fake_header():
    # A fake sync + header whose length covers the real frame: the CRC fails and the real frame is found.
    port = _loop()
    fake = b"\xa5\x5a" + bytes([P.MSG_RESULT, 1]) + (20).to_bytes(4, "little")
    port.write(b"noise" + fake + P.encode_frame(P.MSG_RESULT, 9, b"\x00" * 12) + b"\x00" * 20)
    reader = P.FrameReader(port)
    frame = reader.read_frame(2.0)
    assert (frame.type, frame.seq) == (P.MSG_RESULT, 9)
    assert reader.stats.bad_frames >= 1


def test_reader_rejects_corrupted_frame_and_times_out_clearly():
    port = _loop()
    bad = bytearray(P.encode_frame(P.MSG_INFO, 1, b"abc"))
    bad[9] ^= 0xFF
    port.write(bytes(bad))
    reader = P.FrameReader(port)
    t0 = time.monotonic()
    with pytest.raises(P.ProtocolTimeout, match=r"no complete frame within 0.5 s .*1 bad frames"):
        reader.read_frame(0.5)
    assert 0.4 < time.monotonic() - t0 < 2.0


class _Device(threading.Thread):
    """A TCP peer standing in for the line to a device: sends garbage, optionally answers PING."""

    def __init__(self, answer: bool, garbage: bytes):
        super().__init__(daemon=True)
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.answer, self.garbage = answer, garbage

    def run(self):
        conn, _ = self.server.accept()
        with conn:
            buf = b""
            while True:
                data = conn.recv(4096)
                if not data:
                    return
                buf += data
                if len(buf) >= 12:  # one PING frame
                    seq = buf[3]
                    buf = buf[12:]
                    reply = self.garbage
                    if self.answer:
                        fields = [1, 96, 10, 3, 4, 60, 25_000_000, 0, 0, 0, 0]
                        payload = b"".join(v.to_bytes(4, "little") for v in fields) + b"test-board"
                        reply += P.encode_frame(P.MSG_INFO, seq, payload)
                    conn.sendall(reply)


def test_runner_survives_garbage_and_reports_a_timeout():
    garbage = b"\x00\xa5\xa5\x5a\xff" * 20  # includes a sync pair with a header that is rubbish
    dev = _Device(answer=True, garbage=garbage)
    dev.start()
    port = serial.serial_for_url(f"socket://127.0.0.1:{dev.port}", timeout=0.1)
    runner = SerialRunner(port, timeout=2.0)
    info = runner.hello()
    assert (info.input_size, info.output_size, info.num_layers, info.board) == (96, 10, 3, "test-board")
    assert runner.reader.stats.garbage_bytes >= len(garbage) - 2
    port.close()

    silent = _Device(answer=False, garbage=b"\x13\x37" * 10)
    silent.start()
    port = serial.serial_for_url(f"socket://127.0.0.1:{silent.port}", timeout=0.1)
    runner = SerialRunner(port, timeout=0.4, retries=1)
    with pytest.raises(P.ProtocolTimeout, match=r"no reply to PING \(seq 2\) after 2 attempt\(s\).*garbage bytes"):
        runner.hello()
    assert runner.retried == 1
    port.close()


# ---- the device-side parser (boards/common/protocol.c) built for the host -------------------------

DRIVER = r"""
#include <stdio.h>
#include <stdint.h>
#include "protocol.h"
#include "board.h"
const char board_name[] = "host";
void board_serial_putc(uint8_t b) { putchar(b); }
int main(void) {
    static uint8_t buf[8 + 64 + 4];
    esc2c_rx_t rx;
    int c;
    esc2c_rx_init(&rx, buf, sizeof(buf));
    while ((c = getchar()) != EOF) {
        if (esc2c_rx_feed(&rx, (uint8_t)c)) {
            fprintf(stderr, "frame %u %u %u\n", esc2c_rx_type(&rx), esc2c_rx_seq(&rx), esc2c_rx_length(&rx));
            /* echo it back re-encoded by the device code */
            esc2c_send_frame(esc2c_rx_type(&rx), esc2c_rx_seq(&rx), esc2c_rx_payload(&rx), esc2c_rx_length(&rx), 0, 0, 0, 0);
            esc2c_rx_done(&rx);
        }
    }
    fprintf(stderr, "stats %u %u\n", rx.bad_frames, rx.garbage_bytes);
    return 0;
}
"""


@pytest.fixture(scope="module")
def device_parser(tmp_path_factory):
    if shutil.which("gcc") is None:
        pytest.fail("gcc is required to build boards/common/protocol.c for the host")
    d = tmp_path_factory.mktemp("proto")
    (d / "driver.c").write_text(DRIVER)
    common = BOARDS_DIR / "common"
    exe = d / "driver"
    subprocess.run(["gcc", "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", f"-I{common}", str(d / "driver.c"),
                    str(common / "protocol.c"), str(common / "crc32.c"), "-o", str(exe)], check=True)

    def feed(stream: bytes):
        proc = subprocess.run([str(exe)], input=stream, capture_output=True, check=True)
        frames = [tuple(int(v) for v in ln.split()[1:]) for ln in proc.stderr.decode().splitlines()
                  if ln.startswith("frame")]
        stats = [ln for ln in proc.stderr.decode().splitlines() if ln.startswith("stats")][0].split()[1:]
        return frames, proc.stdout, tuple(int(v) for v in stats)
    return feed


def test_device_parser_frames_match_host_encoding(device_parser):
    payload = bytes(range(40))
    frames, echoed, stats = device_parser(P.encode_frame(P.MSG_RUN, 5, payload) + P.encode_frame(P.MSG_PING, 6))
    assert frames == [(P.MSG_RUN, 5, 40), (P.MSG_PING, 6, 0)]
    assert echoed == P.encode_frame(P.MSG_RUN, 5, payload) + P.encode_frame(P.MSG_PING, 6)
    assert stats == (0, 0)


def test_device_parser_resyncs_after_garbage(device_parser):
    rng = np.random.default_rng(1)
    good = P.encode_frame(P.MSG_RUN, 9, bytes(rng.integers(0, 256, 30, dtype=np.uint8)))
    cases = [
        b"\x00\x01\xa5\xa5\x13" + good,                                    # plain noise, a lone sync byte
        b"\xa5\x5a\x02\x01" + (10_000).to_bytes(4, "little") + good,         # header with an impossible length
        b"\xa5\x5a\x02\x01" + (20).to_bytes(4, "little") + good + bytes(30),  # length that swallows the frame
        # two nested fake headers before the frame
        b"\xa5\x5a\x02\x01" + (50).to_bytes(4, "little") + b"\xa5\x5a\x02\x02" + (6).to_bytes(4, "little")
        + good + bytes(60),
    ]
    for stream in cases:
        frames, echoed, (bad, garbage) = device_parser(stream)
        assert frames == [(P.MSG_RUN, 9, 30)], stream[:16].hex()
        assert echoed == good
        assert garbage > 0
    # a corrupted frame is never delivered
    corrupt = bytearray(good)
    corrupt[12] ^= 1
    frames, _, (bad, _) = device_parser(bytes(corrupt))
    assert frames == [] and bad >= 1
