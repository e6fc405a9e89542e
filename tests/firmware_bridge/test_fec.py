"""Forward error correction: the Reed-Solomon codec against reedsolo, frames under exact seeded damage,
the wire vectors the C firmware is checked against, the framing layer, and the plain-or-FEC decision rule."""
import json
import random
import struct
import zlib
from pathlib import Path

import pytest

from tinyexit.firmware_bridge.harness import adaptive as a
from tinyexit.firmware_bridge.protocol import constants as pc
from tinyexit.firmware_bridge.protocol import fec
from tinyexit.firmware_bridge.protocol.framing import (Frame, FrameDecoder, ProtocolError, encode_frame,
                                                        parse_raw_frame, raw_frame)

reedsolo = pytest.importorskip("reedsolo")
HERE = Path(__file__).parent


# --- Reed-Solomon against an independent implementation ----------------------------------------------
@pytest.mark.parametrize("k", [10, 14, 24, 25, 32, 33, 43, 48])
def test_codewords_equal_reedsolo_and_decoding_corrects_within_the_bound(k):
    nsym = fec.parity_size(k)
    oracle = reedsolo.RSCodec(nsym, fcr=0, prim=0x11D, generator=2, c_exp=8)
    rng = random.Random(k)
    for trial in range(150):
        data = bytes(rng.randrange(256) for _ in range(k))
        word = fec.rs_encode(data, nsym)
        assert word == bytes(oracle.encode(data))
        erasures = rng.randrange(3)
        errors = rng.randrange((nsym - erasures) // 2 + 1)  # 2 * errors + erasures <= nsym
        places = rng.sample(range(len(word)), erasures + errors)
        damaged = bytearray(word)
        for q in places:
            damaged[q] ^= rng.randrange(1, 256)
        assert fec.rs_decode(bytes(damaged), nsym, tuple(places[:erasures])) == (data, errors)
        # reedsolo agrees on the same damaged word
        assert bytes(oracle.decode(bytes(damaged), erase_pos=places[:erasures])[0]) == data


def test_generator_and_parity_sizes():
    assert fec.generator(4) == bytes(reedsolo.rs_generator_poly(4, fcr=0, generator=2))
    assert [fec.parity_size(k) for k in (1, 14, 16, 17, 32, 33, 48)] == [4, 4, 4, 6, 6, 8, 8]
    assert fec.rs_decode(b"\x01" * 20, 8) is None        # 20 arbitrary bytes: far from every codeword


def test_block_layout_and_codeword_sizes():
    assert fec.block_sizes(10) == [10] and fec.block_sizes(48) == [48] and fec.block_sizes(49) == [25, 24]
    assert fec.block_sizes(97) == [33, 32, 32] and fec.block_sizes(214) == [43, 43, 43, 43, 42]
    assert [fec.codeword_size(n) for n in (10, 47, 48, 49, 97, 130, 200, 214)] == [14, 55, 56, 61, 117, 154, 240, 254]
    assert fec.MAX_FEC_RAW == 214 and fec.codeword_size(215) == 255
    sizes = [fec.codeword_size(n) for n in range(10, 215)]
    assert all(x < y for x, y in zip(sizes, sizes[1:]))       # strictly increasing: one raw length per size
    assert fec.wire_size(10) == 18 and fec.wire_size(214, lead=True) == 259 and fec.wire_size(215) is None


# --- frames under exact damage -------------------------------------------------------------------------
def _frame(raw_len: int, rng) -> Frame:
    payload = bytes(0 if rng.random() < 0.2 else rng.randrange(256) for _ in range(raw_len - 10))
    return Frame(pc.MSG_LOAD_INPUT, rng.randrange(0xFFFF), payload)


def _decoded(body: bytes):
    events = FrameDecoder().feed(b"\x00" + body + b"\x00")
    assert len(events) == 1
    return events[0]


def _corrupt(b: bytearray, pos: int, rng) -> None:
    b[pos] ^= rng.randrange(1, 256)
    if b[pos] == 0:  # a 0x00 would split the frame in two: not a corruption the code is built for
        b[pos] = 0x5A


@pytest.mark.parametrize("raw_len", [10, 47, 49, 130, 214])
def test_every_single_drop_duplicate_and_insert_is_repaired(raw_len):
    frame = _frame(raw_len, random.Random(raw_len))
    body = encode_frame(frame, fec=True)[:-1]
    for pos in range(len(body)):
        for damaged in (body[:pos] + body[pos + 1:], body[:pos] + body[pos:pos + 1] + body[pos:],
                        body[:pos] + b"\x55" + body[pos:]):
            got = _decoded(damaged)
            assert got == frame and got.fec, (raw_len, pos)


def test_designed_damage_always_decodes_to_the_original():
    """Seeded frames with at most one lost (or one extra) byte per block, at most 3 lost (2 extra) overall,
    and per block at most (np - 1) / 2 corrupted bytes (np / 2 in a block without a shift)."""
    rng = random.Random(2024)
    repaired = 0
    for trial in range(240):
        frame = _frame(rng.choice([10, 30, 47, 48, 49, 70, 97, 100, 130, 160, 200, 214]), rng)
        wire = encode_frame(frame, fec=True)[:-1]
        sizes = fec.block_sizes(len(raw_frame(frame)))
        code = bytearray(wire[3:])
        kind = rng.choice(["drop", "insert", "none"])
        most = {"drop": 4, "insert": 3, "none": 1}[kind]
        shifted = set(rng.sample(range(len(sizes)), min(len(sizes), rng.randrange(most))))
        edits, start = [], 0
        for i, k in enumerate(sizes):
            n = k + fec.parity_size(k)
            budget = (fec.parity_size(k) - (i in shifted)) // 2
            for q in rng.sample(range(n), rng.randrange(budget + 1)):
                edits.append(("corrupt", start + q))
            if i in shifted:
                edits.append((kind, start + rng.randrange(n)))
            start += n
        for what, q in sorted(edits, key=lambda e: -e[1]):  # from the end: earlier places stay put
            if what == "corrupt":
                _corrupt(code, q, rng)
            elif what == "drop":
                del code[q]
            else:
                code.insert(q, rng.randrange(1, 256))
        got = _decoded(wire[:3] + bytes(code))
        assert got == frame and got.fec, (trial, edits)
        repaired += bool(edits)
    assert repaired > 150


def test_a_100_byte_frame_with_one_drop_needs_few_decodes(monkeypatch):
    """Work, not time: count Reed-Solomon decodes (a decode is ~20 us here; a hostile body costs the most)."""
    calls = {"n": 0}
    real = fec._berlekamp_massey

    def counted(*args):
        calls["n"] += 1
        return real(*args)

    monkeypatch.setattr(fec, "_berlekamp_massey", counted)
    frame = _frame(100, random.Random(5))
    body = encode_frame(frame, fec=True)[:-1]
    worst = 0
    for pos in range(3, len(body), 7):
        calls["n"] = 0
        assert _decoded(body[:pos] + body[pos + 1:]) == frame
        worst = max(worst, calls["n"])
    assert worst <= 200, worst


def test_noise_without_a_key_majority_is_rejected_at_once():
    assert list(fec.fec_candidates(bytes([1, 2, 3]) + bytes(range(4, 100)))) == []
    assert list(fec.fec_candidates(b"\x07\x07")) == []                       # too short
    rng = random.Random(4)
    noise = bytes(rng.randrange(256) for _ in range(1 << 16))
    assert [e for e in FrameDecoder().feed(noise) if isinstance(e, Frame)] == []


# --- wire vectors (the C firmware checks its encoder and decoder against these) --------------------------
def test_vectors_file_is_what_the_generator_writes_and_each_vector_holds():
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_fec_vectors", HERE / "make_fec_vectors.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    assert (HERE / "fec_vectors.json").read_text() == gen.render()
    v = json.loads((HERE / "fec_vectors.json").read_text())
    assert [f["name"] for f in v["frames"]] == ["raw10", "raw47", "raw48", "raw49", "raw97", "raw130", "raw200",
                                                "raw214", "raw215_plain"]
    for f in v["frames"]:
        frame = Frame(f["type"], f["seq"], bytes.fromhex(f["payload_hex"]))
        assert encode_frame(frame, fec=True).hex() == f["wire_hex"] and raw_frame(frame).hex() == f["raw_hex"]
    # raw 215 is too long for FEC: plain COBS, byte for byte what encode_frame always sent
    assert v["frames"][-1]["wire_hex"] == encode_frame(Frame(pc.MSG_LOAD_INPUT, 7, bytes(range(1, 206)))).hex()
    first = bytes.fromhex(v["frames"][0]["wire_hex"])
    assert len(first) == 18 and first[-1] == 0 and first[0] == first[1] == first[2] == v["frames"][0]["key"]
    undecodable = [(d["frame"], d["damage"]) for d in v["damaged"] if d.get("expect") == "undecodable"]
    assert len(v["damaged"]) == 123 and len(undecodable) == 26
    for d in v["damaged"]:
        got = _decoded(bytes.fromhex(d["body_hex"]))
        if d.get("expect") == "undecodable":
            assert isinstance(got, ProtocolError) and got.name == d["error"], d["damage"]
        else:
            assert raw_frame(got).hex() == d["expect_raw_hex"], d["damage"]


# --- framing ---------------------------------------------------------------------------------------------
def test_framing_round_trip_records_the_encoding_and_counts_repairs():
    frame = Frame(pc.MSG_RESULT, 9, bytes(range(60)))
    plain, coded = encode_frame(frame), encode_frame(frame, lead=True, fec=True)
    assert coded[0] == 0 and coded[1] == coded[2] == coded[3] != 0 and 0 not in coded[1:-1]
    assert len(coded) == 1 + fec.wire_size(len(raw_frame(frame)))
    dec = FrameDecoder()
    a, b = dec.feed(plain + coded)
    assert a == b == frame and (a.fec, b.fec) == (False, True)
    damaged = bytearray(coded)
    del damaged[20]           # one byte lost in block 1
    damaged[50] ^= 0x21       # one corrupted in block 2
    (c,) = dec.feed(bytes(damaged))
    assert c == frame and c.fec
    counts = {k: v for k, v in dec.counts.items() if k.startswith("fec_")}
    assert counts == {"fec_frames": 2, "fec_corrected_bytes": 1, "fec_recovered_drops": 1, "fec_removed_inserts": 0,
                      "fec_repaired_frames": 1}
    assert dec.counts["frames"] == 3 and dec.counts["resyncs"] == 0


def test_undecodable_fec_frame_is_the_cobs_error_and_long_frames_stay_plain():
    frame = Frame(pc.MSG_RESULT, 9, bytes(range(60)))
    body = bytearray(encode_frame(frame, fec=True)[:-1])
    for q in range(3, 3 + 2 * 5, 2):  # five corrupted bytes in block 1: beyond its 4
        body[q] ^= 0x81
    dec = FrameDecoder()
    (err,) = dec.feed(bytes(body) + b"\x00")
    assert isinstance(err, ProtocolError) and dec.counts["fec_frames"] == 0 and dec.counts["resyncs"] == 1
    big = Frame(pc.MSG_LOAD_INPUT, 1, bytes(300))
    assert encode_frame(big, fec=True) == encode_frame(big)
    with pytest.raises(ProtocolError, match="FRAME_TOO_LONG"):
        encode_frame(Frame(pc.MSG_LOAD_INPUT, 1, bytes(pc.MAX_PAYLOAD + 1)), fec=True)
    assert pc.CAP_FEC == 0x80 and pc.CAPABILITY_NAMES[pc.CAP_FEC] == "fec"


def test_a_hand_built_raw_frame_decodes_like_the_spec_says():
    header = struct.pack("<BBHH", 1, pc.MSG_ACK, 3, 4) + struct.pack("<I", 447)
    raw = header + struct.pack("<I", zlib.crc32(header))
    assert parse_raw_frame(raw) == Frame(pc.MSG_ACK, 3, struct.pack("<I", 447))
    body = fec.fec_encode(raw)
    code = bytes(b ^ w for b, w in zip(fec.rs_encode(raw, 4), fec.WHITEN))  # one block, 4 parity, whitened
    assert fec.WHITEN[:4] == bytes(fec.EXP[(7 * i * i + 11 * i + 1) % 255] for i in range(4)) == b"\x02\x5a\x0a\xaf"
    key = min(set(range(1, 256)) - set(code))
    assert body == bytes([key] * 3) + code.replace(b"\x00", bytes([key]))


# --- the plain-or-FEC decision rule ----------------------------------------------------------------------------
def test_decision_rule_exact_numbers():
    assert a.FEC_MAX_CHUNK == 200 and a.LOAD_RAW_OVERHEAD == 14 and a.ACK_RAW == 14
    assert a.fec_survival(192, 0.0) == 1.0 and not a.prefer_fec(0.0, 960)
    assert round(a.fec_efficiency(178, 0.0), 4) == round(178 / 228, 4) == 0.7807  # 4 blocks of 48: 224 + 4 bytes
    assert a.best_fec_chunk(0.0) == 178
    line1 = 1 - 0.99 * 0.995     # 1 % corrupt + 0.5 % drop
    line3 = 1 - 0.97 * 0.99      # 3 % + 1 %
    assert (a.best_fec_chunk(line1, 960), a.best_fec_chunk(line3, 960)) == (130, 58)
    assert round(a.fec_efficiency(130, line1), 3) == 0.659 and round(a.plain_efficiency(25, line1), 3) == 0.258
    assert round(a.fec_efficiency(58, line3), 3) == 0.418 and round(a.plain_efficiency(13, line3), 3) == 0.072
    # the switch-over: plain below ~0.08 % damaged bytes, FEC above
    assert [a.prefer_fec(p, 960) for p in (1e-4, 5e-4, 7e-4, 1e-3, 2e-3, line1, line3)] == \
        [False, False, False, True, True, True, True]
    assert a.prefer_fec(line1, 60)  # even when the device takes only 60-byte chunks
    # the estimate inverts the model: the error rate FEC predicts at a size gives back the per-byte error
    rate = 1 - a.fec_survival(130 + 14, line1) * a.fec_survival(14, line1)
    assert abs(a.fec_byte_error(rate, 130) - line1) < 1e-6


def test_chunk_controller_switches_to_the_fec_model_and_keeps_its_estimate():
    c = a.ChunkController(960)
    assert [c.record(False) for _ in range(4)] == [480, 240, 120, 60]
    p = c.byte_error()
    assert round(p, 5) == 0.0028 and a.prefer_fec(p, 960)
    assert c.use_fec() == a.best_fec_chunk(p, 960) == 178 and c.fec
    assert abs(c.byte_error() - p) < 1e-6          # the estimate carries over the switch
    assert c.use_fec() == 178                      # idempotent
    sizes = [c.record(False) for _ in range(6)]
    assert sizes[-1] < 178 and all(s <= a.FEC_MAX_CHUNK for s in sizes)
    assert a.ChunkController(60, fec=True).target() == 60
