"""The protocol in C (firmware/core) against the Python implementation: shared constants, recorded
transcripts, results, and bounds checks under AddressSanitizer/UBSan on the host port."""
import random
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tinyexit.firmware_bridge.protocol import messages as m
from tinyexit.firmware_bridge.protocol import constants as pc
from tinyexit.firmware_bridge.firmware.build import FirmwareConfig, models_c
from tinyexit.firmware_bridge.firmware.host import FIRMWARE_DIR, build_frame_dump, build_host_firmware
from tinyexit.firmware_bridge.protocol.framing import Frame, FrameDecoder, encode_frame
from tinyexit.exit_policy import ExitPolicy

from helpers import tflite_models as TM

TRANSCRIPTS = Path(__file__).parents[1] / "firmware_bridge" / "transcripts"
HASH = "5a" * 32


@pytest.fixture(scope="module")
def device(tmp_path_factory):
    """The chain test model (64-byte input, 3 segments, 10 logits) in the host-port firmware, with ASan."""
    from tinyexit.export.codegen import CodegenConfig, generate_c
    tmp = tmp_path_factory.mktemp("hostfw")
    src = generate_c(TM.chain_models(), CodegenConfig(model_name="tm", artifact_hash=HASH))
    c_dir = src.write(tmp / "c")
    (tmp / "te_models.c").write_text(models_c("tm", {"artifact_hash": HASH}, src.summary(), [],
                                              FirmwareConfig(kernels="arm_dsp", input_capacity=640)))
    exe = build_host_firmware(c_dir, "tm", tmp / "te_models.c", tmp / "fw_host", kernels="arm_dsp")
    return exe, src


def _talk(exe: Path, data: bytes) -> list[Frame]:
    res = subprocess.run([str(exe)], input=data, capture_output=True, timeout=120)
    assert res.returncode == 0, res.stderr.decode(errors="replace")[-2000:]
    events = FrameDecoder().feed(res.stdout)
    assert all(isinstance(e, Frame) for e in events), events
    assert events[0].type == pc.MSG_INFO and events[0].seq == pc.SEQ_UNSOLICITED  # boot announcement
    return events[1:]


def test_c_header_is_the_python_constants():
    assert (FIRMWARE_DIR / "core" / "tinyexit_protocol.h").read_text() == pc.c_header()


def test_status_enum_and_its_strings_come_from_the_one_list(tmp_path):
    prog = tmp_path / "status.c"
    prog.write_text('#include <stdio.h>\n#include "te_status.h"\nint main(void) {\n'
                    + "".join(f'  printf("%s 0x%04X %s\\n", te_status_name(TE_{n}), (unsigned)TE_{n}, '
                              f'te_status_text(TE_{n}));\n' for n, _, _ in pc.ERRORS)
                    + '  printf("%s\\n", te_status_name((te_status_t)0x7777));\n  return 0;\n}\n')
    core = FIRMWARE_DIR / "core"
    subprocess.run(["gcc", "-std=c99", "-Wall", "-Werror", f"-I{core}", str(prog), str(core / "te_status.c"),
                    "-o", str(tmp_path / "status")], check=True)
    out = subprocess.run([str(tmp_path / "status")], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == [f"{n} 0x{c:04X} {t}" for n, c, t in pc.ERRORS] + ["UNKNOWN"]


@pytest.mark.parametrize("name", sorted(p.stem for p in TRANSCRIPTS.glob("*.expect")))
def test_c_decoder_reports_what_the_transcript_expects(tmp_path_factory, name):
    exe = tmp_path_factory.getbasetemp() / "frame_dump"
    if not exe.exists():
        build_frame_dump(exe)
    res = subprocess.run([str(exe)], input=(TRANSCRIPTS / f"{name}.bin").read_bytes(), capture_output=True,
                         timeout=30)
    assert res.returncode == 0, res.stderr
    assert res.stdout.decode().splitlines() == (TRANSCRIPTS / f"{name}.expect").read_text().splitlines()


@pytest.mark.parametrize("name", sorted(p.stem for p in TRANSCRIPTS.glob("*.replies")))
def test_c_device_replies_as_the_transcript_expects(device, name):
    exe, _ = device
    lines, previous = [], None
    for frame in _talk(exe, (TRANSCRIPTS / f"{name}.bin").read_bytes()):
        line = f"reply {frame.seq} {pc.MESSAGE_NAMES[frame.type]}"
        if frame.type == pc.MSG_ERROR:
            line += f" {pc.ERROR_NAMES[m.Error.unpack(frame.payload).code]}"
        elif previous is not None and frame == previous:
            line += " same-as-previous"
        lines.append(line)
        previous = frame
    assert lines == (TRANSCRIPTS / f"{name}.replies").read_text().splitlines()


def test_info_results_and_early_exits_match_tflite_micro_and_the_python_policy(device):
    exe, src = device
    xs = np.stack(TM.random_inputs((1, 8, 8, 1), 9, seed=8))
    reqs = [encode_frame(Frame(pc.MSG_HELLO, 0), lead=True),
            encode_frame(Frame(pc.MSG_LOAD_INPUT, 1, m.LoadInput(0, xs.tobytes()[:300]).pack())),
            encode_frame(Frame(pc.MSG_LOAD_INPUT, 2, m.LoadInput(300, xs.tobytes()[300:]).pack()))]
    policies = [ExitPolicy("max_softmax", (0.6,)), ExitPolicy("entropy", (0.5,)), ExitPolicy("patience", (2,)),
                ExitPolicy("calibrated", (0.9, 0.3))]
    seq = 3
    for slot in range(len(xs)):
        reqs.append(encode_frame(Frame(pc.MSG_RUN, seq, m.Run(pc.MODE_CHAIN, 2, 0, (), 2, slot).pack())))
        seq += 1
        for p in policies:
            reqs.append(encode_frame(Frame(pc.MSG_RUN, seq, m.Run(pc.MODE_EARLY_EXIT, 0, p.policy_id, p.params, 1,
                                                                  slot).pack())))
            seq += 1
    replies = _talk(exe, b"".join(reqs))
    info = m.Info.unpack(replies[0].payload)
    assert (info.runtime, info.n_segments, info.n_logits, info.input_bytes, info.hash_hex) == \
        (pc.RUNTIME_GENERATED_C, 3, 10, 64, HASH)
    assert info.capabilities == pc.CAP_CHAIN | pc.CAP_EARLY_EXIT | pc.CAP_SEGMENT | pc.CAP_RESET | pc.CAP_FEC
    assert info.tick_hz == 1_000_000_000 and info.input_capacity == 640
    assert [m.Ack.unpack(r.payload).valid_bytes for r in replies[1:3]] == [300, 576]
    want = _tflm_chain(xs)
    results = [m.Result.unpack(r.payload) for r in replies[3:]]
    per = 1 + len(policies)
    for slot in range(len(xs)):
        chain = results[slot * per]
        assert chain.exit == 2 and chain.repeat == 2 and len(chain.ticks) == 3
        np.testing.assert_array_equal(chain.logits, want[2][slot])
        for p, res in zip(policies, results[slot * per + 1:(slot + 1) * per]):
            deq = [(want[k][slot].astype(np.float64) - s["logits_zp"]) * s["logits_scale"]
                   for k, s in enumerate(src.segments)]
            k = int(p.exit_index(np.stack(deq)[:, None, :])[0])
            assert res.exit == k and len(res.ticks) == k + 1, (p, slot)
            np.testing.assert_array_equal(res.logits, want[k][slot])


def _tflm_chain(xs):
    blobs, cur, out = TM.chain_models(), list(xs), []
    for k, blob in enumerate(blobs):
        outs = TM.tflm_run(blob, cur)
        logits = [next(o for o in os_ if o.ndim == 2).ravel() for os_ in outs]
        out.append(np.stack(logits))
        if k < 2:
            cur = [max(os_, key=lambda o: o.ndim) for os_ in outs]
    return out


def _fuzz_frames(rng: random.Random, n: int) -> list[bytes]:
    frames = []
    for i in range(n):
        kind = rng.random()
        seq = rng.randrange(0, 0xFFFF)
        if kind < 0.05:  # a valid exchange now and then, so RUN really runs between the bad ones
            frames.append(encode_frame(Frame(pc.MSG_LOAD_INPUT, seq, m.LoadInput(0, bytes(64)).pack())))
            frames.append(encode_frame(Frame(pc.MSG_RUN, (seq + 1) % 0xFFFF, m.Run(
                rng.choice([pc.MODE_CHAIN, pc.MODE_EARLY_EXIT]), rng.randrange(3), 0, (0.5,), 1, 0).pack())))
        elif kind < 0.3:
            payload = struct.pack("<I", rng.choice([0, 1, 63, 64, 639, 640, 641, 0xFFFFFFFF, rng.randrange(1 << 32)]))
            payload += bytes(rng.randrange(256) for _ in range(rng.choice([0, 1, 5, 64, 700, 1020])))
            frames.append(encode_frame(Frame(pc.MSG_LOAD_INPUT, seq, payload)))
        elif kind < 0.6:
            n_params = rng.choice([0, 1, 2, 16, 17, 255])
            head = struct.pack("<BBBBHH", rng.randrange(6), rng.randrange(256), rng.randrange(6), n_params,
                               rng.choice([0, 1, 2, 65535]) if rng.random() < 0.1 else rng.randrange(1, 3),
                               rng.choice([0, 1, 9, 10, 11, 65535]))
            body = struct.pack(f"<{min(n_params, 40)}f", *[rng.choice([0.5, 2.0, float("nan"), 1.0, 3.0])
                                                           for _ in range(min(n_params, 40))])
            frames.append(encode_frame(Frame(pc.MSG_RUN, seq, (head + body)[:rng.choice([3, 8, 12, 200, 10000])])))
        elif kind < 0.75:
            msg_type = rng.choice([t for t in range(256) if t != 0x05])  # 0x05 = EXIT would end the firmware
            frames.append(encode_frame(Frame(msg_type, seq, bytes(rng.randrange(256)
                                                                  for _ in range(rng.randrange(40))))))
        elif kind < 0.8:
            frames.append(encode_frame(Frame(rng.choice([pc.MSG_HELLO, pc.MSG_RESET]), seq)))
        elif kind < 0.9:
            raw = bytearray(encode_frame(Frame(pc.MSG_HELLO, seq, bytes(rng.randrange(3)))))
            for _ in range(rng.randrange(1, 3)):  # corruption: bit flips, cuts, inserted zeros
                j = rng.randrange(len(raw) - 1)
                raw[j] = rng.randrange(256)
            frames.append(bytes(raw) + b"\x00")
        else:
            frames.append(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 1200))) + b"\x00")
    return frames


def test_every_length_and_index_from_the_host_is_bounds_checked(device):
    """2000 random, malformed and oversize frames through the ASan/UBSan build: no memory error, and every
    well-formed request gets exactly one reply (a RESULT, ACK, INFO or ERROR frame)."""
    exe, _ = device
    rng = random.Random(20240601)
    frames = _fuzz_frames(rng, 2000)
    data = encode_frame(Frame(pc.MSG_LOAD_INPUT, 0, m.LoadInput(0, bytes(640)).pack()), lead=True) + b"".join(frames)
    replies = _talk(exe, data)
    events = FrameDecoder().feed(data)  # the Python decoder: one reply per frame, one NACK per bad frame
    assert len(replies) == len(events) > 2000
    for event, reply in zip(events, replies):
        if isinstance(event, Frame):
            assert reply.seq == event.seq
        else:
            assert (reply.seq, m.Error.unpack(reply.payload).code) == (pc.SEQ_UNSOLICITED, event.code)
    kinds = {pc.MESSAGE_NAMES[r.type] for r in replies}
    assert kinds == {"ACK", "RESULT", "INFO", "ERROR"}
    codes = {pc.ERROR_NAMES[m.Error.unpack(r.payload).code] for r in replies if r.type == pc.MSG_ERROR}
    assert {"REQ_INPUT_RANGE", "REQ_PAYLOAD_SIZE", "REQ_BAD_SLOT", "FRAME_TOO_LONG", "FRAME_CRC"} <= codes
