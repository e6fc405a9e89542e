"""Fuzzing the Python frame decoder and message parsers with hypothesis: `fuzz_decoder(FuzzConfig) -> dict`.

Hypothesis builds byte streams from pieces a wire really carries: good frames
(with the leading 0x00 a sender may put before a frame), frames with a bad
header (length field, version), frames cut short, random garbage, and floods
without a delimiter longer than any receive buffer.  Each stream is fed to a
fresh `FrameDecoder` in hypothesis-chosen chunks, then in `variants - 1`
seeded mutations (bits flipped, bytes inserted, deleted, duplicated; another
chunking).  Every input must satisfy:

* only `Frame` and `ProtocolError` come out; nothing else is raised;
* the receive buffer never holds more than the longest legal frame (no
  allocation grows with the input);
* no hang: each input decodes within `max_input_s` of CPU time (a SIGPROF watchdog
  interrupts a decoder that spins);
* the same events whatever the chunking;
* no phantom frames: every decoded frame is one the stream's author encoded;
* resynchronization: in an undamaged stream every good frame is decoded, in
  order, whatever garbage came before it;
* every message parser (`messages.*.unpack`) fed a decoded payload raises
  nothing but `ProtocolError`.

`hypothesis` is a test dependency: the fuzz command needs tinyexit[test].
"""
from __future__ import annotations

import gc
import random
import signal
import struct
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass

from tinyexit.errors import InternalError, UserError
from tinyexit.firmware_bridge.protocol import messages as m
from tinyexit.firmware_bridge.protocol import constants as pc
from tinyexit.firmware_bridge.protocol.framing import (Frame, FrameDecoder, ProtocolError, cobs_encode, crc32, encode_frame,
                                              parse_raw_frame)

_PARSERS = (m.LoadInput, m.Ack, m.Run, m.Result, m.Info, m.Error)


@dataclass(frozen=True)
class FuzzConfig:
    inputs: int = 1_000_000         # byte streams fed to a fresh decoder (hypothesis examples x variants)
    variants: int = 10              # inputs per hypothesis example: the stream itself + mutations
    seed: int = 0
    max_input_s: float = 2.0        # CPU seconds; an input that needs more is a hang (a normal one: < 1 ms)
    progress: bool = True

    def __post_init__(self):
        if self.inputs < 1 or not 1 <= self.variants <= 1000:
            raise UserError(f"--inputs {self.inputs} / --variants {self.variants}: use inputs >= 1, variants 1..1000")
        if self.max_input_s <= 0:
            raise UserError(f"max_input_s {self.max_input_s}: must be > 0")

    @property
    def examples(self) -> int:
        return -(-self.inputs // self.variants)

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: dict) -> "FuzzConfig":
        return cls(**d)


# --- building streams -----------------------------------------------------------------
def bad_header_frame(version: int, msg_type: int, seq: int, length: int, payload: bytes) -> bytes:
    """A well-stuffed frame with a correct CRC whose header may lie (length field, version)."""
    raw = struct.pack("<BBHH", version, msg_type, seq, length) + payload
    return b"\x00" + cobs_encode(raw + struct.pack("<I", crc32(raw))) + b"\x00"


def render(pieces: list) -> tuple[bytes, list]:
    """(stream bytes, the frames its author encoded, in order)."""
    out, frames = bytearray(), []
    for kind, value in pieces:
        if kind == "frame":
            out += encode_frame(value, lead=True)
            frames.append(value)
        elif kind == "bad_header":
            out += bad_header_frame(*value)
            raw = struct.pack("<BBHH", *value[:4]) + value[4]
            try:  # a header that happens to be valid is an ordinary frame
                frames.append(parse_raw_frame(raw + struct.pack("<I", crc32(raw))))
            except ProtocolError:
                pass
        elif kind == "truncated":
            frame, cut = value
            wire = encode_frame(frame, lead=True)
            out += wire[:min(cut, len(wire) - 2)]  # always short of its last byte and delimiter
        elif kind == "flood":
            out += bytes([0xA5]) * value
        else:
            out += value
    return bytes(out), frames


def strategies():
    """The hypothesis strategy of (pieces, chunk sizes, decoder max payload)."""
    from hypothesis import strategies as st

    payload = st.one_of(st.binary(max_size=24), st.binary(min_size=200, max_size=pc.MAX_PAYLOAD))
    frame = st.builds(Frame, st.integers(0, 255), st.integers(0, 0xFFFF), payload)
    bad = st.tuples(st.integers(0, 3), st.integers(0, 255), st.integers(0, 0xFFFF), st.integers(0, 0xFFFF),
                    st.binary(max_size=40))
    piece = st.one_of(frame.map(lambda f: ("frame", f)), bad.map(lambda v: ("bad_header", v)),
                      st.tuples(frame, st.integers(1, 40)).map(lambda v: ("truncated", v)),
                      st.integers(pc.MAX_ENCODED_FRAME - 8, 3 * pc.MAX_ENCODED_FRAME).map(lambda n: ("flood", n)),
                      st.binary(max_size=300).map(lambda b: ("garbage", b)))
    chunks = st.lists(st.integers(1, 400), max_size=12)
    max_payload = st.sampled_from([pc.MAX_PAYLOAD, pc.MAX_PAYLOAD, pc.MIN_DEVICE_PAYLOAD, 256])
    return st.tuples(st.lists(piece, max_size=10), chunks, max_payload)


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One to four random edits: bit flips, inserted garbage, deleted or duplicated ranges."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(4)
        pos = rng.randrange(len(buf) + 1)
        if op == 0 and buf:
            i = min(pos, len(buf) - 1)
            buf[i] ^= 1 << rng.randrange(8)
        elif op == 1:
            buf[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        elif op == 2:
            del buf[pos:pos + rng.randint(1, 64)]
        else:
            buf[pos:pos] = buf[pos:pos + rng.randint(1, 64)]
    return bytes(buf)


# --- checking one input -----------------------------------------------------------------
def _key(event) -> tuple:
    if isinstance(event, Frame):
        return ("frame", event.type, event.seq, event.payload, event.version)
    return ("error", event.code)


def decode(data: bytes, cuts: list[int], max_payload: int) -> list:
    """Events of a fresh decoder fed `data` in chunks of `cuts` (then the rest), buffer bound checked."""
    dec = FrameDecoder(max_payload)
    events, pos = [], 0
    for size in [*cuts, len(data)]:
        if pos >= len(data):
            break
        events += dec.feed(data[pos:pos + size])
        pos += size
        if dec.pending > max_encoded(max_payload):
            raise InternalError(f"decoder buffers {dec.pending} bytes, more than a frame")
    for e in events:
        if not isinstance(e, (Frame, ProtocolError)):
            raise InternalError(f"decoder produced {type(e).__name__}")
    return events


def max_encoded(max_payload: int) -> int:
    raw = pc.HEADER_SIZE + max_payload + pc.CRC_SIZE
    return raw + raw // 254 + 1


def check_parsers(payload: bytes) -> None:
    for parser in _PARSERS:
        try:
            parser.unpack(payload)
        except ProtocolError:
            pass


@contextmanager
def cpu_watchdog(seconds: float):
    """Interrupt a decoder that spins: SIGPROF after `seconds` of CPU time (not wall time, so a process that
    merely waits for a shared core is no hang).  Only in the main thread, where signals are delivered."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def fire(signum, frame):
        raise InternalError(f"an input used more than {seconds:g} s of CPU (a hang)")

    old = signal.signal(signal.SIGPROF, fire)
    signal.setitimer(signal.ITIMER_PROF, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, old)


def check_input(data: bytes, cuts: list[int], max_payload: int, authored: list, intact: bool, stats,
                max_input_s: float = 2.0) -> None:
    """All properties of one input (see the module docstring); raises InternalError on a violation."""
    collecting = gc.isenabled()
    gc.disable()  # a full collection of hypothesis's own heap would be billed to this input (up to ~1 s seen)
    t0 = time.thread_time()
    try:
        with cpu_watchdog(max_input_s):
            chunked = decode(data, cuts, max_payload)
            whole = decode(data, [], max_payload)
        spent = time.thread_time() - t0
    finally:
        if collecting:
            gc.enable()
    if [_key(e) for e in chunked] != [_key(e) for e in whole]:
        raise InternalError("events depend on how the bytes were chunked")
    frames = [e for e in whole if isinstance(e, Frame)]
    known = {_key(f) for f in authored}
    phantoms = [f for f in frames if _key(f) not in known]
    if phantoms:
        raise InternalError(f"decoded a frame nobody encoded: {phantoms[0]}")
    if intact:
        want = [_key(f) for f in authored if len(f.payload) <= max_payload]
        if [_key(f) for f in frames] != want:
            raise InternalError(f"resynchronization lost frames: decoded {len(frames)} of {len(want)}")
    for f in frames:
        check_parsers(f.payload)
    stats["inputs"] += 1
    stats["bytes"] += len(data)
    stats["frames"] += len(frames)
    stats["errors"] += len(whole) - len(frames)
    stats["max_input_s"] = max(stats["max_input_s"], spent)


def check_example(pieces: list, cuts: list[int], max_payload: int, variants: int, stats,
                  max_input_s: float = 2.0) -> None:
    data, authored = render(pieces)
    check_input(data, cuts, max_payload, authored, True, stats, max_input_s)
    rng = random.Random(crc32(data) ^ (len(cuts) << 32))  # str/bytes hash() is salted per process
    for _ in range(variants - 1):
        damaged = mutate(data, rng)
        chunking = [rng.randint(1, 300) for _ in range(rng.randrange(8))]
        check_input(damaged, chunking, max_payload, authored, False, stats, max_input_s)


# --- the long run ------------------------------------------------------------------------------
def fuzz_decoder(cfg: FuzzConfig = FuzzConfig(), log=print) -> dict:
    """Run hypothesis for cfg.examples examples (cfg.inputs inputs); returns the figures."""
    try:
        from hypothesis import HealthCheck, Phase, given, seed, settings
    except ImportError:
        raise UserError("hypothesis is not installed; pip install 'tinyexit[test]' to fuzz the decoder") from None
    stats = {"inputs": 0, "bytes": 0, "frames": 0, "errors": 0, "max_input_s": 0.0, "examples": 0}
    bar = _bar(cfg)

    @seed(cfg.seed)
    @settings(max_examples=cfg.examples, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck), derandomize=False)
    @given(strategies())
    def run(case):
        pieces, cuts, max_payload = case
        before = stats["inputs"]
        check_example(pieces, cuts, max_payload, cfg.variants, stats, cfg.max_input_s)
        stats["examples"] += 1
        if bar is not None:
            bar.update(stats["inputs"] - before)

    t0 = time.monotonic()
    try:
        run()
    finally:
        if bar is not None:
            bar.close()
    stats["wall_s"] = round(time.monotonic() - t0, 1)
    stats["inputs_per_s"] = round(stats["inputs"] / max(stats["wall_s"], 1e-9))
    stats["max_input_s"] = round(stats["max_input_s"], 4)
    stats["config"] = cfg.to_dict()
    stats["violations"] = 0  # any violation raised above and stopped the run
    log(f"fuzz-decoder: {stats['inputs']} inputs ({stats['examples']} hypothesis examples x {cfg.variants}), "
        f"{stats['bytes'] / 1e6:.1f} MB, {stats['frames']} frames and {stats['errors']} frame errors decoded, "
        f"slowest input {stats['max_input_s'] * 1e3:.1f} ms of CPU, {stats['wall_s']} s: no violation")
    return stats


def _bar(cfg: FuzzConfig):
    if not cfg.progress:
        return None
    from tinyexit.progress import progress_bar

    return progress_bar(cfg.examples * cfg.variants, "fuzz-decoder", "input", smoothing=0.1)
