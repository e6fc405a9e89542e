"""The seed corpus and dictionary of the C fuzzer (reliability_c.py, firmware/fuzz/fuzz_protocol.c).

Seeds: every recorded transcript (tests/firmware_bridge/transcripts), both as wire
bytes and as the harness's frame records, for both firmware images; short
sessions built with the Python framing layer that reach every request path of
each model (chains, each exit policy and its parameter edges, the monolithic
models, SEGMENT, duplicates and RESET, the end of the input buffer, GENERATE);
the same sessions FEC-encoded (firmware/core/te_fec.h), clean and with a byte
corrupted, dropped or doubled in each frame; and the inputs in
firmware/fuzz/regressions that once found a bug.
"""
from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import numpy as np

from tinyexit.errors import UserError
from tinyexit.firmware_bridge.protocol import messages as m
from tinyexit.firmware_bridge.protocol import constants as pc
from tinyexit.firmware_bridge.firmware.host import FIRMWARE_DIR
from tinyexit.firmware_bridge.protocol.framing import Frame, FrameDecoder, encode_frame

REGRESSIONS = FIRMWARE_DIR / "fuzz" / "regressions"
TRANSCRIPTS = Path(__file__).resolve().parents[2] / "tests" / "firmware_bridge" / "transcripts"
MODELS = ("classifier", "denoiser")   # control byte bit 0 of an input picks the image


# record flags (fuzz_protocol.c): bit 0 lead delimiter, 3 FEC-encoded, 4 damaged (at u8, how u8 follow)
FLAG_LEAD, FLAG_FEC, FLAG_DAMAGE = 1, 8, 16


def _record(frame: Frame, lead: bool = False, fec: bool = False, damage: tuple[int, int] | None = None) -> bytes:
    """One frame record of the harness's structured mode: flags | type | seq | length | [damage] | payload."""
    flags = (FLAG_LEAD if lead else 0) | (FLAG_FEC if fec else 0) | (FLAG_DAMAGE if damage else 0)
    head = struct.pack("<BBHH", flags, frame.type, frame.seq, len(frame.payload))
    return head + (bytes(damage) if damage else b"") + frame.payload


def _sessions(run_dir: Path, model: str) -> dict[str, list[Frame]]:
    """Short well-formed sessions reaching every request path of one model."""
    from tinyexit.firmware_bridge.firmware.verify import test_split_inputs

    c = json.loads((run_dir / "export" / model / "c" / "codegen.json").read_text())
    segs = c["segments"]
    x = np.asarray(test_split_inputs(run_dir, model)[:4], np.int8).tobytes()
    feats = np.random.default_rng(7).integers(-128, 128, segs[-1]["in_bytes"], dtype=np.int8).tobytes()
    seq = iter(range(1, 10_000))

    def req(t, payload=b""):
        return Frame(t, next(seq), payload)

    def run(mode, segment=0, policy=0, params=(), repeat=1, slot=0):
        return req(pc.MSG_RUN, m.Run(mode, segment, policy, params, repeat, slot).pack())

    hello, load = Frame(pc.MSG_HELLO, 0), req(pc.MSG_LOAD_INPUT, m.LoadInput(0, x).pack())
    policies = [(pc.POLICY_MAX_SOFTMAX, (0.6,)), (pc.POLICY_ENTROPY, (0.4,)), (pc.POLICY_PATIENCE, (2.0,)),
                (pc.POLICY_CALIBRATED, (0.9, 0.5))]
    out = {
        "chain": [hello, load, *(run(pc.MODE_CHAIN, k, slot=k % 4) for k in range(len(segs)))],
        "early_exit": [hello, load, *(run(pc.MODE_EARLY_EXIT, 0, p, params, slot=i) for i, (p, params) in
                                      enumerate(policies))],
        "full": [hello, load, run(pc.MODE_FULL, pc.FULL_DEPTH, slot=1), run(pc.MODE_FULL, pc.FULL_ALL_EXITS, slot=2)],
        "segment": [hello, req(pc.MSG_LOAD_INPUT, m.LoadInput(0, feats[:len(feats) // 2]).pack()),
                    req(pc.MSG_LOAD_INPUT, m.LoadInput(len(feats) // 2, feats[len(feats) // 2:]).pack()),
                    run(pc.MODE_SEGMENT, len(segs) - 1)],
        "duplicate_reset": [hello, load, run(pc.MODE_CHAIN, 0, repeat=3)],
    }
    out["duplicate_reset"] += [out["duplicate_reset"][-1], req(pc.MSG_RESET), run(pc.MODE_CHAIN, 0)]
    edges = {pc.POLICY_MAX_SOFTMAX: (0.0, -0.0, 1.0, 1.0000001, 1e-45), pc.POLICY_ENTROPY: (0.0, 1.0, -1e-45),
             pc.POLICY_PATIENCE: (1.0, 1.5, 16.0, 17.0, 65535.0, 65536.0, 1e30, 0.0),
             pc.POLICY_CALIBRATED: (0.5, 1.0, 2.0)}
    out["policy_edges"] = [hello, load, *(run(pc.MODE_EARLY_EXIT, 0, p, (v,), slot=1) for p, vs in edges.items()
                                          for v in vs),
                           run(pc.MODE_EARLY_EXIT, 0, pc.POLICY_CALIBRATED, tuple(0.05 * i for i in range(16)))]
    cap, size = max(s["in_bytes"] for s in segs), segs[0]["in_bytes"]  # the images' input buffer (model_sources)
    out["buffer_end"] = [hello, req(pc.MSG_LOAD_INPUT, m.LoadInput(0, bytes(cap - 64)).pack()),
                         req(pc.MSG_LOAD_INPUT, m.LoadInput(cap - 64, x[:60]).pack()),
                         run(pc.MODE_CHAIN, 0, slot=(cap - 4) // size - 1), run(pc.MODE_CHAIN, 0, slot=cap // size)]
    if model == "denoiser":
        out["generate"] = [hello, req(pc.MSG_GENERATE, struct.pack("<I", 1234)),
                           req(pc.MSG_GENERATE, b"\x01\x02"), req(pc.MSG_EXIT)]
    return out


def seed_corpus(run_dir, out, target: str = "protocol") -> Path:
    """Write the seed inputs of a fuzz target into `out` (emptied first); returns it."""
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    protocol = target.startswith("protocol")  # protocol and protocol_stub share seeds and regressions
    seeds = _protocol_seeds(Path(run_dir)) if protocol else _mlperf_seeds(Path(run_dir))
    regressions = REGRESSIONS / ("protocol" if protocol else target)
    for path in sorted(regressions.glob("*")) if regressions.is_dir() else ():
        seeds[f"regression-{path.name}"] = path.read_bytes()  # inputs that once found a bug (fixed)
    for name, data in seeds.items():
        (out / name).write_bytes(data)
    return out


def _protocol_seeds(run_dir: Path) -> dict[str, bytes]:
    """Control byte + body (see fuzz_protocol.c): transcripts and sessions, as wire bytes and as frame records."""
    seeds: dict[str, bytes] = {}
    if not TRANSCRIPTS.is_dir():
        raise UserError(f"{TRANSCRIPTS}: missing; fuzz-c seeds its corpus from the recorded transcripts "
                        "(run it from a tinyexit source tree)")
    for path in sorted(TRANSCRIPTS.glob("*.bin")):
        wire = path.read_bytes()
        frames = [e for e in FrameDecoder().feed(wire) if isinstance(e, Frame)]
        for image in (0, 1):
            seeds[f"transcript-{path.stem}-{MODELS[image]}-wire"] = bytes([image]) + wire
            if frames:
                seeds[f"transcript-{path.stem}-{MODELS[image]}-records"] = bytes([image | 2]) + b"".join(
                    _record(f, lead=i == 0) for i, f in enumerate(frames))
    for image, model in enumerate(MODELS):
        for name, frames in _sessions(Path(run_dir), model).items():
            seeds[f"session-{model}-{name}-wire"] = bytes([image]) + b"".join(
                encode_frame(f, lead=i == 0) for i, f in enumerate(frames))
            seeds[f"session-{model}-{name}-records"] = bytes([image | 2]) + b"".join(
                _record(f, lead=i == 0) for i, f in enumerate(frames))
            seeds[f"fec-{model}-{name}-wire"] = bytes([image]) + b"".join(
                encode_frame(f, lead=i == 0, fec=True) for i, f in enumerate(frames))
            # clean, then each frame hit once at a place and in a way that moves along the session
            seeds[f"fec-{model}-{name}-records"] = bytes([image | 2]) + b"".join(
                _record(f, lead=i == 0, fec=True) for i, f in enumerate(frames))
            seeds[f"fec-{model}-{name}-damaged-records"] = bytes([image | 2]) + b"".join(
                _record(f, lead=i == 0, fec=True, damage=((7 + 23 * i) % 60, (0x40 * i + i) & 0xFF))
                for i, f in enumerate(frames))
    return seeds


def _mlperf_seeds(run_dir: Path) -> dict[str, bytes]:
    """Command sequences of the MLPerf Tiny runner (docs/mlperf-tiny.md), good and bad."""
    from tinyexit.firmware_bridge.firmware.verify import test_split_inputs

    x = np.asarray(test_split_inputs(run_dir, "classifier")[:1], np.int8).tobytes()
    hexed = x.hex()
    sessions = {
        "identify": "name%profile%help%timestamp%",
        "infer": f"db load {len(x)}%db {hexed[:64]}%db {hexed[64:]}%db print%infer 2 1%results%timestamp%",
        "bad": f"%db%db load 0%db load 99999999%db load x%db 1%db zz%infer 1%results%infer 0%infer 1 x%nothing%"
               f"db load {len(x) - 1}%db {hexed}%infer 1 0%db load {len(x)}%db {'0' * 2000}%",
        "long": "x" * 1100 + "%name%",
    }
    return {f"mlperf-{name}": text.encode() for name, text in sessions.items()}


def dictionary(path, target: str = "protocol") -> Path:
    """libFuzzer tokens: boundary integers and floats a host might send (float compares give the fuzzer no hints);
    for the MLPerf parser, its command words and numbers."""
    if target == "mlperf":
        words = ["name", "profile", "help", "timestamp", "db", "load", "print", "infer", "results", "%", " ", "0",
                 "64", "65", "1024", "4294967295", "99999999", "100000000", "ff", "0F"]
        path = Path(path)
        path.write_text("".join(f'k{i}="{_escaped(w.encode())}"\n' for i, w in enumerate(words)))
        return path
    floats = [0.0, -0.0, 0.5, 1.0, 1.0000001, 0.99999994, -0.1, 1.5, 2.0, 2.5, 16.0, 17.0, 65535.0, 65536.0, 7e4, 1e30,
              3.4e38, float("inf"), float("-inf"), float("nan"), 1e-45]
    ints = [(v, f) for f in ("<H", "<I") for v in (0, 1, 2, 3, 15, 16, 17, 63, 64, 255, 256, 767, 768, 1019, 1020,
                                                    1023, 1024, 1025, 0x7FFF, 0x8000, 0xFFFE, 0xFFFF)]
    ints += [(v, "<I") for v in (0x7FFFFFFF, 0x80000000, 0xFFFFFFF0, 0xFFFFFFFF)]
    tokens = [struct.pack("<f", v) for v in floats] + [struct.pack(f, v) for v, f in ints]
    tokens += [bytes([t]) for t in sorted(pc.MESSAGE_NAMES)] + [b"\x00\x00", b"\xff\xff\xff\xff"]
    path = Path(path)
    path.write_text("".join(f'k{i}="{_escaped(tok)}"\n' for i, tok in enumerate(tokens)))
    return path


def _escaped(token: bytes) -> str:
    return "".join("\\x%02x" % b for b in token)
