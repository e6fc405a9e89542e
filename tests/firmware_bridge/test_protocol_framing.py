"""Frames: COBS, CRC-32, the streaming decoder's resynchronization and its bounded memory."""
import struct

import pytest
from hypothesis import given, settings, strategies as st

from tinyexit.firmware_bridge.protocol import constants as pc
from tinyexit.firmware_bridge.protocol.framing import (Frame, FrameDecoder, ProtocolError, cobs_decode, cobs_encode, crc32,
                                              encode_frame, max_encoded_size, parse_raw_frame)


def test_crc32_check_value():
    assert crc32(b"123456789") == 0xCBF43926


@pytest.mark.parametrize("data, encoded", [
    (b"\x00", "0101"), (b"\x00\x00", "010101"), (b"\x00\x11\x00", "01021101"),
    (b"\x11\x22\x00\x33", "0311220233"), (b"\x11\x22\x33\x44", "0511223344"), (b"\x11\x00\x00\x00", "0211010101"),
    (b"", "01"),
])
def test_cobs_known_vectors(data, encoded):
    assert cobs_encode(data).hex() == encoded
    assert cobs_decode(bytes.fromhex(encoded)) == data


def test_cobs_block_boundaries():
    assert cobs_encode(bytes(range(1, 255))) == b"\xff" + bytes(range(1, 255))        # no trailing 0x01
    assert cobs_encode(bytes(range(0, 255))) == b"\x01\xff" + bytes(range(1, 255))
    assert cobs_encode(bytes(range(1, 256))) == b"\xff" + bytes(range(1, 255)) + b"\x02\xff"
    assert cobs_encode(bytes(range(2, 256)) + b"\x00") == b"\xff" + bytes(range(2, 256)) + b"\x01\x01"


@given(st.binary(max_size=1200))
def test_cobs_round_trip_and_overhead(data):
    enc = cobs_encode(data)
    assert 0 not in enc
    assert len(enc) <= len(data) + len(data) // 254 + 1
    assert cobs_decode(enc) == data


def test_frame_bytes_are_fixed():
    # HELLO seq 0: raw 01 01 00 00 00 00 | crc32 = 0x47FE5BB6 -> b6 5b fe 47; COBS blocks
    # [01 01] [] [] [] [b6 5b fe 47] -> 03 01 01 | 01 | 01 | 01 | 05 b6 5b fe 47, then the delimiter.
    assert crc32(bytes([1, 1, 0, 0, 0, 0])) == 0x47FE5BB6
    assert encode_frame(Frame(pc.MSG_HELLO, 0)).hex() == "03010101010105b65bfe4700"
    assert encode_frame(Frame(pc.MSG_HELLO, 0), lead=True)[0] == 0


def test_max_encoded_size_bounds_every_frame():
    frame = encode_frame(Frame(pc.MSG_LOAD_INPUT, 7, bytes(range(1, 256)) * 4 + b"\x01" * 4))
    assert len(frame) - 1 <= max_encoded_size(pc.MAX_PAYLOAD) == pc.MAX_ENCODED_FRAME
    assert FrameDecoder().feed(frame)[0].payload[:3] == b"\x01\x02\x03"


def _raw(version=1, msg_type=3, seq=5, payload=b"abc", length=None, crc_xor=0):
    n = len(payload) if length is None else length
    raw = struct.pack("<BBHH", version, msg_type, seq, n) + payload
    return raw + struct.pack("<I", crc32(raw) ^ crc_xor)


@pytest.mark.parametrize("raw, code", [
    (b"\x01\x02\x03", pc.Status.FRAME_SHORT),
    (_raw(length=pc.MAX_PAYLOAD + 1), pc.Status.FRAME_TOO_LONG),
    (_raw(length=60000), pc.Status.FRAME_TOO_LONG),
    (_raw(length=4), pc.Status.FRAME_LENGTH),
    (_raw(crc_xor=0x80000000), pc.Status.FRAME_CRC),
    (_raw(version=2), pc.Status.FRAME_VERSION),
])
def test_parse_raw_frame_rejects(raw, code):
    with pytest.raises(ProtocolError) as info:
        parse_raw_frame(raw)
    assert info.value.code == code


def test_length_field_checked_against_the_receivers_own_limit():
    with pytest.raises(ProtocolError) as info:
        parse_raw_frame(_raw(payload=bytes(100)), max_payload=64)
    assert info.value.code == pc.Status.FRAME_TOO_LONG


def test_decoder_resyncs_after_garbage_and_counts():
    good = encode_frame(Frame(pc.MSG_RUN, 9, b"\x01\x02"))
    dec = FrameDecoder()
    # Garbage then a delimiter (a sender's leading 0x00): the next frame survives.  A cut frame
    # costs only itself.  (Garbage glued to a frame without a delimiter costs that frame.)
    events = dec.feed(b"\xffnoise\x07\x00" + good + b"\x00" + good[:5] + b"\x00" + good)
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["ProtocolError", "Frame", "ProtocolError", "Frame"]
    assert events[1] == events[3] == Frame(pc.MSG_RUN, 9, b"\x01\x02")
    assert dec.counts["frames"] == 2 and dec.counts["resyncs"] == 2 and dec.counts["empty"] == 1
    assert FrameDecoder().feed(b"noise" + good) != [Frame(pc.MSG_RUN, 9, b"\x01\x02")]


def test_decoder_memory_is_bounded_without_delimiters():
    dec = FrameDecoder(max_payload=64)
    limit = max_encoded_size(64)
    events = []
    for _ in range(100):
        events += dec.feed(b"\x05" * 1000)
        assert dec.pending <= limit
    assert [e.code for e in events] == [pc.Status.FRAME_TOO_LONG]  # one error per over-long run, not per chunk
    good = encode_frame(Frame(pc.MSG_HELLO, 1))
    assert dec.feed(b"\x00" + good) == [Frame(pc.MSG_HELLO, 1)]
    assert dec.counts["discarded_bytes"] == 100_000


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=8), st.integers(1, 64))
def test_decoder_any_split_gives_the_same_events(chunks, step):
    good = encode_frame(Frame(pc.MSG_ACK, 3, b"\x00\x01\x00\x00"))
    stream = b"".join(c + good for c in chunks)
    whole = [repr(e) for e in FrameDecoder().feed(stream)]
    dec, parts = FrameDecoder(), []
    for i in range(0, len(stream), step):
        parts += [repr(e) for e in dec.feed(stream[i:i + step])]
    assert parts == whole


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000))
def test_decoder_fuzz_only_frames_or_protocol_errors(data):
    dec = FrameDecoder()
    events = dec.feed(data)
    assert all(isinstance(e, (Frame, ProtocolError)) for e in events)
    assert dec.pending <= max_encoded_size(pc.MAX_PAYLOAD)
    good = encode_frame(Frame(pc.MSG_HELLO, 2), lead=True)
    assert dec.feed(good)[-1] == Frame(pc.MSG_HELLO, 2)  # always resynchronizes
