"""Regenerate the recorded protocol transcripts beside this file (README.md explains them).

    .venv/bin/python tests/firmware_bridge/transcripts/make_transcripts.py

Two kinds, byte-exact and deterministic (fixed seeds, no clock):
  <name>.bin + <name>.expect   bytes on the wire and what a frame decoder must report for them
  <name>.bin + <name>.replies  host->device requests and the replies a device must send
                               (a digits classifier: 64-byte int8 input, 3 segments, 10 logits)
tests/firmware_bridge/test_protocol_transcripts.py checks the files equal what this script builds,
and that the Python decoder and the agent behave as the .expect/.replies files say.
"""
from __future__ import annotations

import random
import struct
import sys
from pathlib import Path

from tinyexit.firmware_bridge.protocol import messages as m
from tinyexit.firmware_bridge.protocol import constants as pc
from tinyexit.firmware_bridge.protocol.framing import Frame, cobs_encode, crc32, encode_frame

HERE = Path(__file__).resolve().parent
HASH = bytes(range(32))


def raw_frame(msg_type: int, seq: int, payload: bytes, version: int = 1, length: int | None = None,
              crc_xor: int = 0) -> bytes:
    """A frame built by hand, so a test can lie in any field."""
    n = len(payload) if length is None else length
    raw = struct.pack("<BBHH", version, msg_type, seq, n) + payload
    return cobs_encode(raw + struct.pack("<I", crc32(raw) ^ crc_xor)) + b"\x00"


def _frame_line(f: Frame) -> str:
    return f"frame 0x{f.type:02X} {f.seq} {f.payload.hex() or '-'}"


def _error_line(name: str) -> str:
    return f"error {name} 0x{pc.ERROR_CODES[name]:04X}"


def _messages() -> list[Frame]:
    info = m.Info(pc.RUNTIME_LITERT, 3, pc.CAP_FULL | pc.CAP_CHAIN | pc.CAP_EARLY_EXIT, 1024, 10, 1_000_000_000,
                  64, 4096, 0x12345678, 0x0F, HASH, "agent@example", "ai-edge-litert 2.3.0", "tinyexit-agent 0.1.0")
    return [
        Frame(pc.MSG_HELLO, 0),
        Frame(pc.MSG_INFO, 0, info.pack()),
        Frame(pc.MSG_LOAD_INPUT, 1, m.LoadInput(0, bytes(range(64))).pack()),
        Frame(pc.MSG_ACK, 1, m.Ack(64).pack()),
        Frame(pc.MSG_RUN, 2, m.Run(pc.MODE_EARLY_EXIT, 0, pc.POLICY_MAX_SOFTMAX, (0.9,), 1, 0).pack()),
        Frame(pc.MSG_RESULT, 2, m.Result(pc.MODE_EARLY_EXIT, 1, (120000, 250000), (-12, 40, 3, -128, 127, 0, 5, -7, 9, 1),
                                         1_000_000_000, 1, 9000).pack()),
        Frame(pc.MSG_RUN, 3, m.Run(pc.MODE_CHAIN, 2, 0, (), 10, 0).pack()),
        Frame(pc.MSG_ERROR, 3, m.Error(pc.Status.REQ_BAD_SLOT, "slot 9 beyond capacity").pack()),
        Frame(pc.MSG_ERROR, pc.SEQ_UNSOLICITED, m.Error(pc.Status.FRAME_CRC, "CRC mismatch").pack()),
        Frame(pc.MSG_RESET, 4),
    ]


def decoder_transcripts() -> dict[str, tuple[bytes, list[str]]]:
    """name -> (wire bytes, expected decoder events)."""
    msgs = _messages()
    hello, run = encode_frame(msgs[0]), encode_frame(msgs[4])
    out = {"messages": (b"".join(encode_frame(f) for f in msgs), [_frame_line(f) for f in msgs])}
    noise = b"QEMU boot banner\r\nfirmware v0.1\r\n"
    rng = random.Random(5)
    garbage = bytes(rng.randrange(256) for _ in range(40))
    # A device's boot text, then a frame sent with a leading delimiter, then line noise, then a frame.
    out["garbage_resync"] = (noise + encode_frame(msgs[0], lead=True) + garbage + b"\x00" + run,
                             ["error FRAME_COBS 0x0101", _frame_line(msgs[0])] + _garbage_events(garbage) +
                             [_frame_line(msgs[4])])
    # Cut on the wire after 9 bytes: what is left decodes to 8 bytes, shorter than a header + CRC.
    out["truncated"] = (run[:9] + b"\x00" + run, [_error_line("FRAME_SHORT"), _frame_line(msgs[4])])
    # Three payload bytes missing inside a well-stuffed frame: the length field disagrees.
    raw = run[:-1]
    from tinyexit.firmware_bridge.protocol.framing import cobs_decode

    cut = cobs_decode(raw)
    out["length_mismatch"] = (cobs_encode(cut[:-7] + cut[-4:]) + b"\x00" + run,
                              [_error_line("FRAME_LENGTH"), _frame_line(msgs[4])])
    bad = bytearray(run)
    bad[16] ^= 0x01  # a payload byte (0x66 of the float 0.9), not a COBS code byte
    out["crc_error"] = (bytes(bad) + run, [_error_line("FRAME_CRC"), _frame_line(msgs[4])])
    out["oversize_length"] = (raw_frame(pc.MSG_RUN, 9, bytes(8), length=2000) +
                              raw_frame(pc.MSG_LOAD_INPUT, 10, bytes(20), length=pc.MAX_PAYLOAD + 1) +
                              bytes([7]) * (pc.MAX_ENCODED_FRAME + 10) + b"\x00" + run,
                              [_error_line("FRAME_TOO_LONG")] * 3 + [_frame_line(msgs[4])])
    out["bad_version"] = (raw_frame(pc.MSG_HELLO, 0, b"", version=2) + hello,
                          [_error_line("FRAME_VERSION"), _frame_line(msgs[0])])
    out["short_and_empty"] = (b"\x00\x00" + b"\x03\x01\x02\x00" + b"\x00" + b"\x00" + hello + b"\x00",
                              [_error_line("FRAME_SHORT"), _frame_line(msgs[0])])
    out["cobs_invalid"] = (b"\x09\x01\x02\x00" + hello, [_error_line("FRAME_COBS"), _frame_line(msgs[0])])
    out["duplicate"] = (run + run, [_frame_line(msgs[4])] * 2)
    return out


def _garbage_events(garbage: bytes) -> list[str]:
    # The noise pieces between zero bytes; each non-empty piece is one rejected frame.
    from tinyexit.firmware_bridge.protocol.framing import FrameDecoder

    events = FrameDecoder().feed(garbage + b"\x00")
    return [_error_line(e.name) for e in events]


def device_transcripts() -> dict[str, tuple[bytes, list[str]]]:
    """name -> (host->device bytes, expected replies) for the digits classifier device."""
    params = m.Run(pc.MODE_EARLY_EXIT, 0, pc.POLICY_MAX_SOFTMAX, (0.5,), 1, 0)
    load = m.LoadInput(0, bytes(64)).pack()
    reqs = [
        (Frame(pc.MSG_HELLO, 0), "reply 0 INFO"),
        (Frame(pc.MSG_LOAD_INPUT, 1, load), "reply 1 ACK"),
        (Frame(pc.MSG_RUN, 2, params.pack()), "reply 2 RESULT"),
        (Frame(pc.MSG_RUN, 2, params.pack()), "reply 2 RESULT same-as-previous"),
        (Frame(pc.MSG_RUN, 3, m.Run(pc.MODE_CHAIN, 2, 0, (), 1, 0).pack()), "reply 3 RESULT"),
    ]
    happy = b"".join(encode_frame(f, lead=i == 0) for i, (f, _) in enumerate(reqs))
    out = {"session_duplicate": (happy, [r for _, r in reqs])}
    bad = [
        (m.Run(pc.MODE_CHAIN, 7, 0, (), 1, 0).pack(), "REQ_BAD_SEGMENT"),
        (m.Run(9, 0, 0, (), 1, 0).pack(), "REQ_BAD_MODE"),
        (m.Run(pc.MODE_EARLY_EXIT, 0, 200, (0.5,), 1, 0).pack(), "REQ_BAD_POLICY"),
        (m.Run(pc.MODE_EARLY_EXIT, 0, pc.POLICY_MAX_SOFTMAX, (1.5,), 1, 0).pack(), "REQ_BAD_PARAMS"),
        (struct.pack("<BBBBHH", pc.MODE_EARLY_EXIT, 0, 0, 17, 1, 0) + bytes(68), "REQ_BAD_PARAMS"),
        (m.Run(pc.MODE_CHAIN, 0, 0, (), 0, 0).pack(), "REQ_BAD_REPEAT"),
        (m.Run(pc.MODE_CHAIN, 0, 0, (), 1, 0xFFFF).pack(), "REQ_BAD_SLOT"),
        (m.Run(pc.MODE_CHAIN, 0, 0, (), 1, 1).pack(), "REQ_INPUT_MISSING"),
        (m.Run(pc.MODE_CHAIN, 0, 0, (), 1, 0).pack()[:7], "REQ_PAYLOAD_SIZE"),
    ]
    frames = [encode_frame(Frame(pc.MSG_HELLO, 0), lead=True), encode_frame(Frame(pc.MSG_LOAD_INPUT, 1, load))]
    replies = ["reply 0 INFO", "reply 1 ACK"]
    for i, (payload, code) in enumerate(bad, start=2):
        frames.append(encode_frame(Frame(pc.MSG_RUN, i, payload)))
        replies.append(f"reply {i} ERROR {code}")
    seq = len(frames)
    frames += [encode_frame(Frame(pc.MSG_LOAD_INPUT, seq, m.LoadInput(0xFFFFFF00, bytes(4)).pack())),
               encode_frame(Frame(0x3E, seq + 1)), encode_frame(Frame(pc.MSG_HELLO, seq + 2, b"\x01")),
               encode_frame(Frame(pc.MSG_HELLO, pc.SEQ_UNSOLICITED)),
               raw_frame(pc.MSG_RUN, seq + 3, b"\x01" * 8, crc_xor=1),
               encode_frame(Frame(pc.MSG_RUN, seq + 4, m.Run(pc.MODE_CHAIN, 0, 0, (), 1, 0).pack()))]
    replies += [f"reply {seq} ERROR REQ_INPUT_RANGE", f"reply {seq + 1} ERROR REQ_UNKNOWN_TYPE",
                f"reply {seq + 2} ERROR REQ_PAYLOAD_SIZE", f"reply {pc.SEQ_UNSOLICITED} ERROR REQ_BAD_SEQ",
                f"reply {pc.SEQ_UNSOLICITED} ERROR FRAME_CRC", f"reply {seq + 4} RESULT"]
    out["session_bad_requests"] = (b"".join(frames), replies)
    return out


def build_all() -> dict[str, bytes]:
    """file name -> content, exactly as checked in."""
    files = {}
    for name, (data, events) in decoder_transcripts().items():
        files[f"{name}.bin"] = data
        files[f"{name}.expect"] = ("\n".join(events) + "\n").encode()
    for name, (data, replies) in device_transcripts().items():
        files[f"{name}.bin"] = data
        files[f"{name}.replies"] = ("\n".join(replies) + "\n").encode()
    return files


def main(argv: list[str]) -> int:
    for name, content in build_all().items():
        (HERE / name).write_bytes(content)
        print(f"wrote {HERE / name} ({len(content)} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
