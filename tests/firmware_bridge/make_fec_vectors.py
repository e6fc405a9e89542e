"""Regenerate fec_vectors.json: FEC wire bytes of fixed frames and damaged variants with their decoding.

    python tests/firmware_bridge/make_fec_vectors.py      (writes fec_vectors.json beside this file)

The Python codec (firmware_bridge/protocol/fec.py) is the reference; the C firmware (te_fec.c) must encode
each frame to exactly `wire_hex` and decode each damaged body (bytes between two delimiters) to
`expect_raw_hex`, or find nothing ("undecodable", then the frame error the COBS path named).
"""
from __future__ import annotations

import json
import random
from pathlib import Path

from tinyexit.firmware_bridge.protocol import constants as pc
from tinyexit.firmware_bridge.protocol import fec
from tinyexit.firmware_bridge.protocol.framing import Frame, FrameDecoder, ProtocolError, encode_frame, raw_frame

OUT = Path(__file__).with_name("fec_vectors.json")
RAW_LENGTHS = (10, 47, 48, 49, 97, 130, 200, 214)
SEED = 15


def frames() -> list[Frame]:
    rng = random.Random(SEED)
    out = []
    for i, raw_len in enumerate(RAW_LENGTHS):
        n = raw_len - pc.HEADER_SIZE - pc.CRC_SIZE
        # Payloads with zeros and runs, like real ones (ticks are mostly zero bytes).
        payload = bytes(0 if rng.random() < 0.2 else rng.randrange(256) for _ in range(n))
        out.append(Frame(pc.MSG_LOAD_INPUT if i % 2 else pc.MSG_RESULT, 100 + i, payload))
    return out


def _flip(b: bytearray, pos: int, mask: int) -> None:
    """Corrupt one byte, never into the delimiter (a 0x00 would split the frame: another kind of damage)."""
    b[pos] ^= mask
    if b[pos] == 0:
        b[pos] = 0x5A


def damages(body: bytes) -> list[tuple[str, bytes]]:
    """Named damaged copies of one frame's body (between the delimiters)."""
    sizes = fec.block_sizes(_raw_len(body))
    first = sizes[0] + fec.parity_size(sizes[0])
    t = fec.parity_size(sizes[0]) // 2
    mid = 3 + len(body[3:]) // 2
    out = []

    def edit(name, fn):
        b = bytearray(body)
        fn(b)
        out.append((name, bytes(b)))

    edit("clean", lambda b: None)
    edit("one byte corrupted", lambda b: _flip(b, mid, 0x10))
    edit(f"{t} bytes of block 1 corrupted (its limit)", lambda b: [_flip(b, 3 + 2 * i, 0x81) for i in range(t)])
    edit(f"{t + 1} bytes of block 1 corrupted (beyond it)", lambda b: [_flip(b, 3 + 2 * i, 0x81) for i in range(t + 1)])
    edit("one key byte corrupted", lambda b: _flip(b, 1, 0x04))
    edit("first key byte dropped", lambda b: b.__delitem__(0))
    edit("byte 5 of block 1 dropped", lambda b: b.__delitem__(3 + 5))
    edit("middle byte dropped", lambda b: b.__delitem__(mid))
    edit("last byte dropped", lambda b: b.__delitem__(len(b) - 1))
    edit("noise byte 0x55 inserted in the middle", lambda b: b.insert(mid, 0x55))
    edit("last byte duplicated", lambda b: b.insert(len(b) - 1, b[-1]))
    edit("byte 2 of block 1 dropped and byte 9 corrupted",
         lambda b: (b.__delitem__(3 + 2), _flip(b, 3 + 9, 0x40)))
    edit("two bytes of block 1 dropped far apart", lambda b: (b.__delitem__(3 + first - 10), b.__delitem__(3 + 3)))
    if len(sizes) > 1:
        edit("one byte dropped in each of the first two blocks",
             lambda b: (b.__delitem__(3 + first + 7), b.__delitem__(3 + 7)))
    if len(sizes) > 2:
        edit("one byte dropped in each of three blocks", lambda b: [b.__delitem__(3 + i * first + 4)
                                                                     for i in (2, 1, 0)])
    if len(sizes) > 3:
        edit("one byte dropped in each of four blocks (more than 3 lost overall)",
             lambda b: [b.__delitem__(3 + i * first + 4) for i in (3, 2, 1, 0)])
    edit("frame cut after 12 bytes", lambda b: b.__delitem__(slice(12, None)))
    return out


def _raw_len(body: bytes) -> int:
    for raw_len in range(fec.MIN_RAW, fec.MAX_FEC_RAW + 1):
        if fec.KEY_COPIES + fec.codeword_size(raw_len) == len(body):
            return raw_len
    raise ValueError("not an undamaged FEC body")


def decode(body: bytes) -> dict:
    dec = FrameDecoder()
    (event,) = dec.feed(b"\x00" + body + b"\x00")
    if isinstance(event, ProtocolError):
        return {"expect": "undecodable", "error": event.name}
    c = dec.counts
    return {"expect_raw_hex": raw_frame(event).hex(), "fec": event.fec, "corrected": c["fec_corrected_bytes"],
            "drops": c["fec_recovered_drops"], "inserts": c["fec_removed_inserts"]}


def vectors() -> dict:
    out = {"spec": "FEC spec v1.1 (docs/protocol.md, FEC encoding)", "generator": "tests/firmware_bridge/"
           "make_fec_vectors.py", "frames": [], "damaged": []}
    for frame in frames():
        raw = raw_frame(frame)
        wire = encode_frame(frame, fec=True)
        name = f"raw{len(raw)}"
        out["frames"].append({"name": name, "type": frame.type, "seq": frame.seq, "payload_hex": frame.payload.hex(),
                              "raw_hex": raw.hex(), "wire_hex": wire.hex(), "key": wire[0],
                              "blocks": fec.block_sizes(len(raw))})
        for what, body in damages(wire[:-1]):
            out["damaged"].append({"frame": name, "damage": what, "body_hex": body.hex(), **decode(body)})
    too_long = Frame(pc.MSG_LOAD_INPUT, 7, bytes(range(1, 206)))  # raw 215: plain COBS even when FEC is asked
    out["frames"].append({"name": "raw215_plain", "type": too_long.type, "seq": too_long.seq,
                          "payload_hex": too_long.payload.hex(), "raw_hex": raw_frame(too_long).hex(),
                          "wire_hex": encode_frame(too_long, fec=True).hex(), "key": None, "blocks": None})
    return out


def render() -> str:
    return json.dumps(vectors(), indent=1) + "\n"


if __name__ == "__main__":
    OUT.write_text(render())
    print(f"wrote {OUT}")
