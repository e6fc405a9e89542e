"""Hostile bytes against the Python frame decoder and message parsers (hypothesis), the short run of
`tinyexit reliability fuzz-decoder`: only ProtocolError, bounded memory, no hang, resynchronization."""
import json
import random
import time
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinyexit.cli import main
from tinyexit.errors import InternalError
from tinyexit.firmware_bridge.protocol import messages as m
from tinyexit.firmware_bridge.protocol import constants as pc
from tinyexit.firmware_bridge.protocol.framing import Frame, FrameDecoder, ProtocolError, encode_frame
from tinyexit.firmware_bridge.reliability.fuzz_decoder import FuzzConfig, check_example, fuzz_decoder, max_encoded

GOOD = Frame(pc.MSG_RUN, 7, bytes(range(1, 60)))


def test_short_hypothesis_run_finds_no_violation():
    stats = fuzz_decoder(FuzzConfig(inputs=4000, variants=10, seed=1, progress=False), log=lambda msg: None)
    assert stats["inputs"] == 4000 and stats["examples"] == 400 and stats["violations"] == 0
    assert stats["frames"] > 500 and stats["errors"] > 2000 and stats["max_input_s"] < 2.0


@settings(max_examples=400, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=1200))
def test_every_message_parser_raises_only_protocol_error(payload):
    for parser in (m.LoadInput, m.Ack, m.Run, m.Result, m.Info, m.Error):
        try:
            parser.unpack(payload)
        except ProtocolError as exc:
            assert pc.error_range(exc.code) == "request"


def test_the_fuzzer_catches_a_decoder_that_loses_frames(monkeypatch):
    real_feed = FrameDecoder.feed

    def lossy(self, data):  # a decoder that forgets a frame after a flood: what resync must never do
        events = real_feed(self, data)
        return [e for e in events if not (isinstance(e, Frame) and self.counts["FRAME_TOO_LONG"])]

    monkeypatch.setattr(FrameDecoder, "feed", lossy)
    stats = {"inputs": 0, "bytes": 0, "frames": 0, "errors": 0, "max_input_s": 0.0}
    with pytest.raises(InternalError, match="resynchronization lost frames"):
        check_example([("flood", 3000), ("frame", GOOD)], [], pc.MAX_PAYLOAD, 1, stats)


def test_the_fuzzer_interrupts_a_decoder_that_spins(monkeypatch):
    def spin(self, data):  # an infinite loop on some input: what "no hang" must catch
        while True:
            pass

    monkeypatch.setattr(FrameDecoder, "feed", spin)
    stats = {"inputs": 0, "bytes": 0, "frames": 0, "errors": 0, "max_input_s": 0.0}
    t0 = time.monotonic()
    with pytest.raises(InternalError, match=r"an input used more than 0.2 s of CPU \(a hang\)"):
        check_example([("frame", GOOD)], [], pc.MAX_PAYLOAD, 1, stats, max_input_s=0.2)
    assert time.monotonic() - t0 < 20


def test_memory_stays_bounded_whatever_the_stream():
    rng = random.Random(3)
    flood = bytes(rng.randrange(1, 256) for _ in range(1 << 16)) * 64          # 4 MiB, no delimiter
    noise = bytes(rng.randrange(256) for _ in range(1 << 20))                  # 1 MiB of random bytes
    dec = FrameDecoder()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for data in (flood, noise):
            for i in range(0, len(data), 4096):
                dec.feed(data[i:i + 4096])
                assert dec.pending <= max_encoded(pc.MAX_PAYLOAD)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024, peak  # the decoder never holds more than one frame, whatever arrives
    assert dec.counts["FRAME_TOO_LONG"] >= 1 and dec.counts["bytes"] == len(flood) + len(noise)
    last = dec.feed(encode_frame(GOOD, lead=True))  # the lead 0x00 closes the noise's tail, then the frame
    assert [e for e in last if isinstance(e, Frame)] == [GOOD] and len(last) <= 2


def test_no_hang_on_large_hostile_input():
    rng = random.Random(4)
    data = bytes(rng.randrange(256) for _ in range(1 << 20)) + bytes([0x01]) * (1 << 22)
    t0 = time.perf_counter()
    events = FrameDecoder().feed(data)
    spent = time.perf_counter() - t0
    assert spent < 10, spent  # 5 MiB: linear time (about a second on a loaded 2-core machine)
    assert all(isinstance(e, (Frame, ProtocolError)) for e in events)


@pytest.mark.parametrize("garbage", [
    b"boot text\r\n",                                       # a device's banner
    bytes(range(1, 256)) * 20,                               # a flood longer than any frame
    encode_frame(GOOD)[:-9],                                 # a frame cut short
    encode_frame(GOOD)[:-1] + b"\x55",                       # a frame whose delimiter was hit
    bytes([0x05, 0x01]) + b"\x00" * 30,                      # bad COBS, then empty frames
    encode_frame(Frame(1, 1, bytes(1024)))[:-3] + b"\x00"])  # a long frame missing bytes
def test_a_good_frame_after_garbage_is_decoded(garbage):
    events = FrameDecoder().feed(garbage + encode_frame(GOOD, lead=True))
    assert [e for e in events if isinstance(e, Frame)][-1:] == [GOOD]
    assert all(isinstance(e, (Frame, ProtocolError)) for e in events)


def test_fuzz_command_writes_its_figures_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "fuzz.json"
    assert main(["reliability", "fuzz-decoder", "--inputs", "300", "--variants", "3", "--out", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert figures["inputs"] == 300 and figures["examples"] == 100 and figures["violations"] == 0
    assert "fuzz-decoder: 300 inputs (100 hypothesis examples x 3)" in capsys.readouterr().out
    assert main(["reliability", "fuzz-decoder", "--inputs", "10", "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip() == f"tinyexit: error: {out}: exists; choose another --out (nothing is " \
                                              "overwritten)"
    assert json.loads(out.read_text()) == figures
