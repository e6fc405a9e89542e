"""The firmware's FEC code (firmware/core/te_fec.c, host build of tools/fec_tool.c under ASan/UBSan) against the
Python reference (firmware_bridge/protocol/fec.py): the same wire bytes for the same frame, the same frame (or
none) from the same damaged body, and the recoveries the spec promises."""
import json
import random
import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from tinyexit.firmware_bridge.firmware.host import FIRMWARE_DIR
from tinyexit.firmware_bridge.protocol.framing import ProtocolError, cobs_decode, cobs_encode, parse_raw_frame

fec = pytest.importorskip("tinyexit.firmware_bridge.protocol.fec")
VECTORS = Path(__file__).parents[1] / "firmware_bridge" / "fec_vectors.json"


class FecTool:
    """tools/fec_tool.c: one request line in, one answer line out."""

    def __init__(self, exe: Path):
        self.proc = subprocess.Popen([str(exe)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def ask(self, line: str) -> str:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline()
        assert answer, f"fec_tool died on {line[:80]}"
        return answer.strip()

    def encode(self, raw: bytes) -> bytes | None:
        out = self.ask(f"E {raw.hex()}")
        return None if out == "-" else bytes.fromhex(out)

    def decode(self, body: bytes) -> bytes | None:
        out = self.ask(f"D {body.hex()}")
        return None if out == "-" else bytes.fromhex(out)

    def receive(self, wire: bytes) -> list[str]:
        return self.ask(f"W {wire.hex()}").split()


@pytest.fixture(scope="module")
def tool(tmp_path_factory):
    core = FIRMWARE_DIR / "core"
    exe = tmp_path_factory.mktemp("fec") / "fec_tool"
    subprocess.run(["gcc", "-std=c99", "-O1", "-g", "-Wall", "-Wextra", "-Werror", "-fsanitize=address,undefined",
                    "-fno-sanitize-recover=all", f"-I{core}", str(FIRMWARE_DIR / "tools" / "fec_tool.c"),
                    *(str(core / n) for n in ("te_fec.c", "te_frame.c", "te_status.c")), "-o", str(exe)], check=True)
    t = FecTool(exe)
    yield t
    t.proc.stdin.close()
    assert t.proc.wait(timeout=30) == 0


def raw_frame(rng: random.Random, payload_len: int) -> bytes:
    head = struct.pack("<BBHH", 1, rng.randrange(256), rng.randrange(0xFFFF), payload_len)
    body = head + bytes(rng.randrange(256) for _ in range(payload_len))
    return body + struct.pack("<I", zlib.crc32(body) & 0xFFFFFFFF)


def py_decode(body: bytes) -> bytes | None:
    """The reference receiver's FEC path: the first candidate of the spec's search that parses."""
    for cand in fec.fec_candidates(body):
        try:
            parse_raw_frame(cand.raw)
        except ProtocolError:
            continue
        return cand.raw
    return None


def damage(rng: random.Random, body: bytes, corrupt: float, drop: float, insert: float) -> bytes:
    """Independent per-byte faults, never a 0x00 (that would be a delimiter, ending the body)."""
    out = bytearray()
    for b in body:
        if rng.random() < drop:
            continue
        out.append(b ^ rng.randrange(1, 256) if rng.random() < corrupt else b)
        if rng.random() < insert:
            out.append(rng.randrange(1, 256))
    return bytes(x or 1 for x in out)


def test_tables_are_the_field_of_0x11d_and_the_reference_whitening():
    exp, x = [], 1
    for _ in range(512):
        exp.append(x)
        x = (x << 1) ^ (0x11D if x & 0x80 else 0)
    log = [0] * 256
    for i in range(255):
        log[exp[i]] = i
    text = (FIRMWARE_DIR / "core" / "te_fec.c").read_text()

    def table(name):
        body = re.search(rf"{name}\[[^\]]+\] = \{{(.*?)\}};", text, re.S).group(1)
        return [int(v, 16) for v in re.findall(r"0x[0-9A-F]{2}", body)]

    assert table("gf_exp") == [exp[i % 255] for i in range(512)]
    assert table("gf_log") == log
    for np_ in (4, 6, 8):
        assert table(f"gen{np_}") == list(fec.generator(np_)[1:])
    assert table("whiten") == list(fec.WHITEN[:56])


def test_parity_of_every_block_size_is_the_reference(tool):
    rng = random.Random(5)
    for k in range(1, 49):
        data = bytes(rng.randrange(256) for _ in range(k))
        np_ = fec.parity_size(k)
        assert tool.ask(f"P {np_} {data.hex()}") == fec.rs_encode(data, np_)[k:].hex()


def test_one_codeword_corrects_what_the_reference_corrects(tool):
    rng = random.Random(6)
    outcomes = {"fixed": 0, "refused": 0}
    for _ in range(600):
        np_ = rng.choice((4, 6, 8))
        k = rng.randint(1, 48)
        word = bytearray(fec.rs_encode(bytes(rng.randrange(256) for _ in range(k)), np_))
        erasure = rng.choice((-1, rng.randrange(len(word))))
        for _ in range(rng.randint(0, np_ // 2 + 2)):
            word[rng.randrange(len(word))] ^= rng.randrange(1, 256)
        ref = fec.rs_decode(bytes(word), np_, (erasure,) if erasure >= 0 else ())
        got = tool.ask(f"C {np_} {erasure} {word.hex()}")
        assert (got == "-") == (ref is None)
        if ref is not None:
            assert bytes.fromhex(got)[:k] == ref[0]
        outcomes["refused" if ref is None else "fixed"] += 1
    assert min(outcomes.values()) > 100  # both sides of the radius were reached


def test_wire_bytes_equal_the_reference_on_random_frames(tool):
    rng = random.Random(7)
    lengths = [0, 1, 37, 38, 39, 86, 87, 134, 135, 182, 183, 203, 204, 205, 300] + \
              [rng.randrange(0, 206) for _ in range(285)]
    fits = 0
    for n in lengths:
        raw = raw_frame(rng, n)
        ref = fec.fec_encode(raw)
        assert tool.encode(raw) == (None if ref is None else ref + b"\x00"), n
        fits += ref is not None
    assert fits == sum(n <= 204 for n in lengths)


def test_damaged_bodies_decode_to_what_the_reference_decodes(tool):
    rng = random.Random(8)
    seen = {"same frame": 0, "no frame": 0}
    for i in range(300):
        raw = raw_frame(rng, rng.randrange(0, 205))
        body = fec.fec_encode(raw)
        rate = (0.01, 0.03, 0.06)[i % 3]
        hit = damage(rng, body, rate, rate / 3, rate / 6)
        ref = py_decode(hit)
        assert tool.decode(hit) == ref, (i, hit.hex())
        seen["same frame" if ref == raw else "no frame"] += 1
        assert ref in (raw, None)
    assert min(seen.values()) >= 20, seen


@pytest.mark.parametrize("fault", ["corrupt", "drop", "insert"])
def test_one_fault_anywhere_in_a_100_byte_frame_is_repaired(tool, fault):
    """Every place: each byte of a 100-byte-payload frame corrupted, dropped or doubled (the keys included)."""
    raw = raw_frame(random.Random(9), 100)
    body = fec.fec_encode(raw)
    for at in range(len(body)):
        if fault == "corrupt":
            hit = body[:at] + bytes([body[at] ^ 0x5A or 1]) + body[at + 1:]
        elif fault == "drop":
            hit = body[:at] + body[at + 1:]
        else:
            hit = body[:at + 1] + body[at:]
        assert tool.decode(hit) == raw, (fault, at)


def test_the_worst_the_spec_promises_is_repaired(tool):
    """np/2 corrupted bytes in every block; one drop in each of three blocks; one insert in each of two."""
    raw = raw_frame(random.Random(10), 204)  # 5 blocks of 42-43 bytes, 8 parity bytes each
    body = fec.fec_encode(raw)
    starts = [3 + sum(k + fec.parity_size(k) for k in fec.block_sizes(len(raw))[:i]) for i in range(5)]
    hit = bytearray(body)
    for s in starts:
        for j in (0, 11, 22, 49):  # the last block is 42 + 8 bytes
            hit[s + j] = hit[s + j] ^ 0xA5 or 1
    assert tool.decode(bytes(hit)) == raw
    dropped = bytearray(body)
    for s in sorted(starts[2:], reverse=True):
        del dropped[s + 17]
    assert tool.decode(bytes(dropped)) == raw == py_decode(bytes(dropped))
    doubled = bytearray(body)
    for s in sorted(starts[3:], reverse=True):
        doubled.insert(s + 30, doubled[s + 30])
    assert tool.decode(bytes(doubled)) == raw
    assert tool.decode(body[:3] + bytes(x ^ 0x33 or 1 for x in body[3:])) is None  # noise: no frame


def test_the_receiver_tries_cobs_first_then_fec(tool):
    rng = random.Random(11)
    a, b, c = raw_frame(rng, 20), raw_frame(rng, 60), raw_frame(rng, 400)
    body_b = fec.fec_encode(b)
    hurt = bytearray(body_b)
    hurt[10] = hurt[10] ^ 0x0F or 1
    del hurt[40]
    stream = (b"\x00" + cobs_encode(a) + b"\x00" + body_b + b"\x00" + bytes(hurt) + b"\x00" + b"\x07" * 30 + b"\x00"
              + cobs_encode(c) + b"\x00" + body_b[:3] + b"\x00")
    # the COBS path's verdict on what FEC cannot decode either (the keys alone read as COBS depend on the key)
    short = "FRAME_COBS"
    try:
        parse_raw_frame(cobs_decode(body_b[:3]))
    except ProtocolError as exc:
        short = exc.name
    assert tool.receive(stream) == [f"F0:{a.hex()}", f"F1:{b.hex()}", f"F1:{b.hex()}", "E:FRAME_COBS",
                                    f"F0:{c.hex()}", f"E:{short}"]


def test_the_reference_vectors(tool):
    """tests/firmware_bridge/fec_vectors.json (written by the Python side): wire bytes, and what the receiver
    makes of each damaged body: the frame (and whether it came by FEC) or the COBS path's error."""
    if not VECTORS.is_file():
        pytest.skip(f"{VECTORS} not written yet")
    data = json.loads(VECTORS.read_text())
    assert data["frames"] and data["damaged"]
    for f in data["frames"]:
        raw = bytes.fromhex(f["raw_hex"])
        wire = tool.encode(raw)
        assert (wire or cobs_encode(raw) + b"\x00").hex() == f["wire_hex"], f["name"]
    for d in data["damaged"]:
        got = tool.receive(b"\x00" + bytes.fromhex(d["body_hex"]) + b"\x00")
        want = f"F{int(d['fec'])}:{d['expect_raw_hex']}" if "expect_raw_hex" in d else f"E:{d['error']}"
        assert got == [want], (d["frame"], d["damage"])


@pytest.mark.qemu
@pytest.mark.skipif(shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None,
                    reason="needs qemu-system-arm and gcc-arm-none-eabi")
def test_decode_cost_on_qemu(tmp_path):
    """tools/fec_bench_main.c on mps2-an386 under -icount shift=0: a 100-byte-payload FEC frame received clean,
    with 3 corrupted bytes and with a byte lost in its last block, each recovered; the ticks (40 instructions
    each) are the figures of the firmware's receive cost, printed for the record."""
    fw = FIRMWARE_DIR
    elf = tmp_path / "fec_bench.elf"
    board = ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"]
    srcs = ["tools/fec_bench_main.c", "core/te_fec.c", "core/te_frame.c", "core/te_status.c", "core/te_port_weak.c",
            "ports/mps2-an386/port.c", "ports/cortex-m/startup.c"]
    subprocess.run(["arm-none-eabi-gcc", *board, "-O2", "-ffunction-sections", "-fdata-sections", "-std=c99", "-Wall",
                    "-Wextra", "-Werror", "-Icore", "-Ikernels", "-Iports", "-Iports/mps2-an386", *srcs,
                    "-nostartfiles", "-specs=nano.specs", "-specs=nosys.specs", "-Wl,--gc-sections",
                    "-Tports/mps2-an386/mps2_an386.ld", "-lm", "-o", str(elf)], cwd=fw, check=True)
    res = subprocess.run(["qemu-system-arm", "-M", "mps2-an386", "-display", "none", "-monitor", "none", "-kernel",
                          str(elf), "-semihosting-config", "enable=on,target=native", "-icount", "shift=0",
                          "-serial", "stdio"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.split("\n")
    ticks = {name: int(t) for name, t, ok in (ln.split() for ln in lines[:4]) if ok == "ok"}
    assert list(ticks) == ["clean", "corrupt3", "drop_last", "drop_last_block_first"] and lines[4] == "done"
    print({name: t * 40 for name, t in ticks.items()}, "instructions")
    assert ticks["clean"] < ticks["corrupt3"] < ticks["drop_last"]
