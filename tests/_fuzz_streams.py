"""Hypothesis strategies for serial-protocol byte streams: valid frames mixed with noise, corrupted frames
and fake headers (a sync pair with a length that swallows what follows)."""
from __future__ import annotations

import struct

from hypothesis import strategies as st

from esc2c.device import protocol as P

CRC_BYTES = P.CRC.size
TYPES = [P.MSG_PING, P.MSG_RUN, P.MSG_RUN_LAYERS, P.MSG_BYE, P.MSG_INFO, P.MSG_RESULT, P.MSG_LAYER, P.MSG_ERROR]


def _no_sync(b: bytes) -> bytes:
    # noise never forms a sync pair, so every frame the reader returns is one that was put in
    return b.replace(P.SYNC, b"\xa5\x00")


@st.composite
def frames(draw, max_payload: int = 64):
    payload = draw(st.binary(max_size=max_payload))
    return P.encode_frame(draw(st.sampled_from(TYPES)), draw(st.integers(0, 255)), payload)


JUNK_KINDS = ["noise", "corrupt", "fake_header", "truncated"]


@st.composite
def pieces(draw, max_payload: int = 64, junk_only: bool = False):
    """("frame", bytes) or ("junk", bytes); ``junk_only``: a junk piece of every kind, drawn directly (a
    filter on the kind throws away a third of the draws, which hypothesis's health check refuses)."""
    kind = draw(st.sampled_from(JUNK_KINDS if junk_only else ["frame", "frame"] + JUNK_KINDS))
    if kind == "frame":
        return "frame", draw(frames(max_payload))
    if kind == "noise":
        return "junk", _no_sync(draw(st.binary(min_size=1, max_size=40)))
    f = bytearray(draw(frames(max_payload)))
    if kind == "corrupt":
        i = draw(st.integers(2, len(f) - 1))
        f[i] ^= draw(st.integers(1, 255))
        return "junk", bytes(f)
    if kind == "truncated":
        # cut at least the whole CRC: a frame missing only its last CRC byte is completed by the next piece
        # whenever that byte is 0xA5 - the first byte of every sync pair (1 in 256, which hypothesis finds)
        return "junk", bytes(f[: draw(st.integers(1, len(f) - CRC_BYTES))])
    length = draw(st.one_of(st.integers(0, 3 * max_payload), st.integers(0, 2**32 - 1)))
    return "junk", P.SYNC + struct.pack("<BBI", draw(st.sampled_from(TYPES)), draw(st.integers(0, 255)), length)


@st.composite
def streams(draw, max_pieces: int = 12, max_payload: int = 64):
    """(stream bytes, the valid frames in it in order, whether any junk holds a sync pair). Junk never
    completes to a valid frame by chance except with CRC-32 odds, which the properties take as impossible."""
    parts = draw(st.lists(pieces(max_payload), max_size=max_pieces))
    expected = [b for k, b in parts if k == "frame"]
    synced = any(k == "junk" and P.SYNC in b for k, b in parts)
    return b"".join(b for _, b in parts), expected, synced


@st.composite
def requests(draw, max_junk: int = 6, max_payload: int = 64):
    """(stream, frame): line junk of every kind, then one valid frame - what a device sees when the host
    sends one request and waits for the answer."""
    junk = draw(st.lists(pieces(max_payload, junk_only=True), max_size=max_junk))
    frame = draw(frames(max_payload))
    return b"".join(b for _, b in junk) + frame, frame
