"""Every length, index and count a host sends is checked by the firmware before use.

Each out-of-range value goes, as a frame built with the Python framing layer, to
(a) the whole firmware on the host port (gcc, AddressSanitizer + UBSan, stdin/stdout
on a real pty) and (b) the mps2-an386 firmware under QEMU over its socket, both
built without the monolithic models (so RUN FULL meets REQ_UNSUPPORTED).  Each
must get exactly one ERROR frame with the right code (a NACK with seq 0xFFFF for
undecodable frames), and the device must still answer HELLO in the same session
(no reboot, no sanitizer report) and finally still run a valid request.
"""
import json
import math
import shutil
import struct
import subprocess
import time
from pathlib import Path

import pytest

from tinyexit.firmware_bridge.protocol import messages as m
from tinyexit.firmware_bridge.protocol import constants as pc
from tinyexit.firmware_bridge.protocol.framing import Frame, FrameDecoder, ProtocolError, cobs_encode, crc32, encode_frame
from tinyexit.firmware_bridge.harness.link import PtyPair, SerialLink
from tinyexit.firmware_bridge.harness.session import DeviceSession

pytestmark = pytest.mark.slow
S = pc.Status
MODEL = "classifier"
CAPACITY = 4096                         # FirmwareConfig's default input buffer
SEG1_IN = 768                           # segment 1 of the test classifier reads 768 bytes


def _with_c(run, models):
    """`tinyexit export --formats c` on the copy: the firmware consumes export/<model>/c, it never generates it."""
    from tinyexit.export.codegen import generate_c_for_run

    for model in models:
        if not (run / "export" / model / "c" / "codegen.json").is_file():
            generate_c_for_run(run, model)
    return run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from helpers.trained_runs import copy_run, exported_run

    run = copy_run(exported_run(tmp_path_factory.getbasetemp()), tmp_path_factory.mktemp("bounds") / "run")
    return _with_c(run, (MODEL,))


def _host_firmware(run: Path, out: Path) -> Path:
    from tinyexit.firmware_bridge.firmware.build import FirmwareConfig, ensure_sources, models_c
    from tinyexit.firmware_bridge.firmware.host import build_host_firmware

    manifest = json.loads((run / "export" / MODEL / "manifest.json").read_text())
    c_dir = ensure_sources(run, MODEL)
    models = out / "te_models.c"
    models.write_text(models_c(MODEL, manifest, json.loads((c_dir / "codegen.json").read_text()), [],
                               FirmwareConfig(kernels="reference", verify=False, monolithic=False)))
    return build_host_firmware(c_dir, MODEL, models, out / "fw_host", kernels="reference")


def _drain(link, quiet_s: float = 0.3) -> None:
    """Swallow what is still in flight (the handshake may have sent HELLO twice to a booting device)."""
    while link.read(quiet_s):
        pass


class _Device:
    """One device and a link to it; `ask` sends wire bytes and returns the one frame that answers."""

    def __init__(self, link, alive, stop):
        self.link, self.alive, self.stop = link, alive, stop
        self.decoder = FrameDecoder()
        self.session = DeviceSession(link, alive=alive)
        self.stderr: Path | None = None

    def last_words(self) -> str:
        return self.stderr.read_text(errors="replace")[:1500] if self.stderr else ""

    def ask(self, wire: bytes, what: str, timeout: float = 20.0) -> Frame:
        self.link.write(wire)
        deadline = time.monotonic() + timeout
        events = []
        while not any(isinstance(e, Frame) for e in events):
            gone = self.alive()
            assert gone is None, f"{what}: the device died ({gone}): {self.last_words()}"
            assert time.monotonic() < deadline, f"{what}: no reply within {timeout} s"
            events += self.decoder.feed(self.link.read(0.2))
        frames = [e for e in events if isinstance(e, Frame)]
        events += self.decoder.feed(self.link.read(0.05))  # anything more would be a second reply
        frames = [e for e in events if isinstance(e, Frame)]
        assert not any(isinstance(e, ProtocolError) for e in events) and len(frames) == 1, (what, events)
        return frames[0]


@pytest.fixture(scope="module", params=["host", "qemu"])
def device(request, run, tmp_path_factory):
    if request.param == "host":
        exe = _host_firmware(run, tmp_path_factory.mktemp("hostfw"))
        pair = PtyPair()
        err = open(exe.parent / "stderr.txt", "wb")
        with open(pair.slave_path, "rb", buffering=0) as rx, open(pair.slave_path, "wb", buffering=0) as tx:
            proc = subprocess.Popen([str(exe)], stdin=rx, stdout=tx, stderr=err)
        dev = _Device(pair.link, lambda: None if proc.poll() is None else f"exited with {proc.returncode}",
                      lambda: (proc.kill(), proc.wait(), pair.close(), err.close()))
        dev.stderr = exe.parent / "stderr.txt"
    else:
        if shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None:
            pytest.skip("needs qemu-system-arm and gcc-arm-none-eabi (make install)")
        from tinyexit.firmware_bridge.firmware.build import FirmwareConfig, build_firmware
        from tinyexit.firmware_bridge.harness.qemu import start_qemu

        report = build_firmware(run, MODEL, FirmwareConfig(kernels="arm_dsp", verify=False, monolithic=False), log=lambda msg: None)
        url, handle = start_qemu(Path(report["elf"]), tmp_path_factory.mktemp("qemu") / "qemu.log")
        link = SerialLink(url)
        dev = _Device(link, handle.alive, lambda: (link.close(), handle.close()))
    dev.info = dev.session.handshake(30)
    _drain(dev.link)
    yield dev
    dev.stop()


def _frame(msg_type: int, seq: int, payload: bytes = b"") -> bytes:
    return encode_frame(Frame(msg_type, seq, payload), lead=True)


def _lying(msg_type: int, seq: int, payload: bytes, version: int = 1, length: int | None = None,
           crc_xor: int = 0) -> bytes:
    """A frame that lies in a header field, from the framing layer's CRC and COBS."""
    raw = struct.pack("<BBHH", version, msg_type, seq, len(payload) if length is None else length) + payload
    return b"\x00" + cobs_encode(raw + struct.pack("<I", crc32(raw) ^ crc_xor)) + b"\x00"


def _run(mode=pc.MODE_CHAIN, segment=0, policy=0, params=(), repeat=1, slot=0) -> bytes:
    return m.Run(mode, segment, policy, tuple(params), repeat, slot).pack()


def _run_head(mode, segment, policy, n_params, repeat, slot) -> bytes:
    return struct.pack("<BBBBHH", mode, segment, policy, n_params, repeat, slot)


def _load(offset: int, n: int) -> bytes:
    return struct.pack("<I", offset) + bytes(range(1, n + 1)) if n < 256 else struct.pack("<I", offset) + bytes(n)


NAN, INF = struct.unpack("<f", b"\x00\x00\xc0\x7f")[0], math.inf
E = pc.MSG_ERROR
# (case, state needed, wire bytes (seq 1000+i is filled in), reply seq: "req" or 0xFFFF, error code)
CASES = [
    # state "empty": nothing loaded yet
    ("RUN before any LOAD_INPUT", "empty", lambda q: _frame(pc.MSG_RUN, q, _run()), "req", S.REQ_INPUT_MISSING),
    ("LOAD_INPUT leaving a gap (offset 1, nothing valid)", "empty", lambda q: _frame(pc.MSG_LOAD_INPUT, q, _load(1, 8)),
     "req", S.REQ_INPUT_RANGE),
    # state "full": the whole input buffer loaded
    ("LOAD_INPUT chunk past the buffer end", "full", lambda q: _frame(pc.MSG_LOAD_INPUT, q, _load(CAPACITY - 10, 20)),
     "req", S.REQ_INPUT_RANGE),
    ("LOAD_INPUT at offset = capacity", "full", lambda q: _frame(pc.MSG_LOAD_INPUT, q, _load(CAPACITY, 1)),
     "req", S.REQ_INPUT_RANGE),
    ("LOAD_INPUT offset 0xFFFFFFFF", "full", lambda q: _frame(pc.MSG_LOAD_INPUT, q, _load(0xFFFFFFFF, 1)),
     "req", S.REQ_INPUT_RANGE),
    ("LOAD_INPUT offset + length wrapping 2^32", "full",
     lambda q: _frame(pc.MSG_LOAD_INPUT, q, _load(0xFFFFFFF0, 32)), "req", S.REQ_INPUT_RANGE),
    ("LOAD_INPUT of 1020 bytes at capacity - 1000", "full",
     lambda q: _frame(pc.MSG_LOAD_INPUT, q, _load(CAPACITY - 1000, 1020)), "req", S.REQ_INPUT_RANGE),
    ("LOAD_INPUT with an offset and no data", "full", lambda q: _frame(pc.MSG_LOAD_INPUT, q, _load(0, 0)),
     "req", S.REQ_PAYLOAD_SIZE),
    ("LOAD_INPUT of 3 bytes", "full", lambda q: _frame(pc.MSG_LOAD_INPUT, q, b"\x00\x00\x00"), "req",
     S.REQ_PAYLOAD_SIZE),
    ("LOAD_INPUT empty", "full", lambda q: _frame(pc.MSG_LOAD_INPUT, q), "req", S.REQ_PAYLOAD_SIZE),
    ("RUN slot = capacity / input size", "full", lambda q: _frame(pc.MSG_RUN, q, _run(slot=CAPACITY // 64)),
     "req", S.REQ_BAD_SLOT),
    ("RUN slot 65535", "full", lambda q: _frame(pc.MSG_RUN, q, _run(slot=65535)), "req", S.REQ_BAD_SLOT),
    ("RUN SEGMENT 1 slot past the buffer for its input size", "full",
     lambda q: _frame(pc.MSG_RUN, q, _run(pc.MODE_SEGMENT, 1, slot=CAPACITY // SEG1_IN)), "req", S.REQ_BAD_SLOT),
    ("RUN payload empty", "full", lambda q: _frame(pc.MSG_RUN, q), "req", S.REQ_PAYLOAD_SIZE),
    ("RUN payload of 7 bytes", "full", lambda q: _frame(pc.MSG_RUN, q, _run()[:7]), "req", S.REQ_PAYLOAD_SIZE),
    ("RUN n_params 1 without the parameter", "full",
     lambda q: _frame(pc.MSG_RUN, q, _run_head(pc.MODE_EARLY_EXIT, 0, 0, 1, 1, 0)), "req", S.REQ_PAYLOAD_SIZE),
    ("RUN n_params 0 with 4 bytes more", "full", lambda q: _frame(pc.MSG_RUN, q, _run() + bytes(4)), "req",
     S.REQ_PAYLOAD_SIZE),
    ("RUN n_params 17", "full",
     lambda q: _frame(pc.MSG_RUN, q, _run_head(pc.MODE_EARLY_EXIT, 0, 3, 17, 1, 0) + struct.pack("<17f", *[.5] * 17)),
     "req", S.REQ_BAD_PARAMS),
    ("RUN n_params 255", "full", lambda q: _frame(pc.MSG_RUN, q, _run_head(pc.MODE_CHAIN, 0, 0, 255, 1, 0)), "req",
     S.REQ_BAD_PARAMS),
    ("RUN mode 4 (GENERATE's result mode)", "full", lambda q: _frame(pc.MSG_RUN, q, _run(pc.MODE_GENERATE)), "req",
     S.REQ_BAD_MODE),
    ("RUN mode 255", "full", lambda q: _frame(pc.MSG_RUN, q, _run(255)), "req", S.REQ_BAD_MODE),
    ("RUN repeat 0", "full", lambda q: _frame(pc.MSG_RUN, q, _run(repeat=0)), "req", S.REQ_BAD_REPEAT),
    ("RUN NaN parameter", "full", lambda q: _frame(pc.MSG_RUN, q, _run(pc.MODE_EARLY_EXIT, params=(NAN,))), "req",
     S.REQ_BAD_PARAMS),
    ("RUN infinite parameter", "full", lambda q: _frame(pc.MSG_RUN, q, _run(pc.MODE_CHAIN, params=(INF,))), "req",
     S.REQ_BAD_PARAMS),
    ("RUN CHAIN segment 3 of 3", "full", lambda q: _frame(pc.MSG_RUN, q, _run(pc.MODE_CHAIN, 3)), "req",
     S.REQ_BAD_SEGMENT),
    ("RUN CHAIN segment 255", "full", lambda q: _frame(pc.MSG_RUN, q, _run(pc.MODE_CHAIN, 255)), "req",
     S.REQ_BAD_SEGMENT),
    ("RUN SEGMENT 3 of 3", "full", lambda q: _frame(pc.MSG_RUN, q, _run(pc.MODE_SEGMENT, 3)), "req",
     S.REQ_BAD_SEGMENT),
    ("RUN FULL variant 2", "full", lambda q: _frame(pc.MSG_RUN, q, _run(pc.MODE_FULL, 2)), "req", S.REQ_BAD_SEGMENT),
    ("RUN FULL without the monolithic model linked", "full", lambda q: _frame(pc.MSG_RUN, q, _run(pc.MODE_FULL, 0)),
     "req", S.REQ_UNSUPPORTED),
    ("RUN FULL all-exits without that model linked", "full",
     lambda q: _frame(pc.MSG_RUN, q, _run(pc.MODE_FULL, 1)), "req", S.REQ_UNSUPPORTED),
    ("RUN exit policy id 4", "full", lambda q: _frame(pc.MSG_RUN, q, _run(pc.MODE_EARLY_EXIT, 0, 4, (0.5,))), "req",
     S.REQ_BAD_POLICY),
    ("RUN exit policy id 255", "full", lambda q: _frame(pc.MSG_RUN, q, _run(pc.MODE_EARLY_EXIT, 0, 255, (0.5,))),
     "req", S.REQ_BAD_POLICY),
    ("RUN early exit without a threshold", "full", lambda q: _frame(pc.MSG_RUN, q, _run(pc.MODE_EARLY_EXIT)), "req",
     S.REQ_BAD_PARAMS),
    ("RUN threshold 1.5", "full", lambda q: _frame(pc.MSG_RUN, q, _run(pc.MODE_EARLY_EXIT, 0, 0, (1.5,))), "req",
     S.REQ_BAD_PARAMS),
    ("RUN threshold -0.1", "full", lambda q: _frame(pc.MSG_RUN, q, _run(pc.MODE_EARLY_EXIT, 0, 1, (-0.1,))), "req",
     S.REQ_BAD_PARAMS),
    ("RUN patience 0", "full", lambda q: _frame(pc.MSG_RUN, q, _run(pc.MODE_EARLY_EXIT, 0, 2, (0.0,))), "req",
     S.REQ_BAD_PARAMS),
    ("RUN patience 2.5", "full", lambda q: _frame(pc.MSG_RUN, q, _run(pc.MODE_EARLY_EXIT, 0, 2, (2.5,))), "req",
     S.REQ_BAD_PARAMS),
    ("HELLO with a payload", "full", lambda q: _frame(pc.MSG_HELLO, q, b"\x01"), "req", S.REQ_PAYLOAD_SIZE),
    ("RESET with a payload", "full", lambda q: _frame(pc.MSG_RESET, q, bytes(4)), "req", S.REQ_PAYLOAD_SIZE),
    ("GENERATE on a device without the denoiser", "full", lambda q: _frame(pc.MSG_GENERATE, q, bytes(4)), "req",
     S.REQ_UNKNOWN_TYPE),
    ("EXIT with a payload", "full", lambda q: _frame(pc.MSG_EXIT, q, b"\x00"), "req", S.REQ_UNKNOWN_TYPE),
    *((f"unknown type 0x{t:02X}", "full", lambda q, t=t: _frame(t, q, b"\x01\x02"), "req", S.REQ_UNKNOWN_TYPE)
      for t in (0x00, 0x07, 0x7F, 0x80, pc.MSG_INFO, pc.MSG_RESULT, 0xFF)),
    ("HELLO with the reserved seq 0xFFFF", "full", lambda q: _frame(pc.MSG_HELLO, 0xFFFF), 0xFFFF, S.REQ_BAD_SEQ),
    ("RUN with the reserved seq 0xFFFF", "full", lambda q: _frame(pc.MSG_RUN, 0xFFFF, _run()), 0xFFFF,
     S.REQ_BAD_SEQ),
    ("payload of 1025 bytes (length field and CRC consistent)", "full",
     lambda q: _lying(pc.MSG_LOAD_INPUT, q, bytes(1025)), 0xFFFF, S.FRAME_TOO_LONG),
    ("length field 0xFFFF on a 12-byte frame", "full", lambda q: _lying(pc.MSG_RUN, q, _run(), length=0xFFFF),
     0xFFFF, S.FRAME_TOO_LONG),
    ("1100 bytes without a delimiter", "full", lambda q: b"\x00" + b"\x01" * 1100 + b"\x00", 0xFFFF,
     S.FRAME_TOO_LONG),
    ("length field 1 more than the payload", "full", lambda q: _lying(pc.MSG_RUN, q, _run(), length=9), 0xFFFF,
     S.FRAME_LENGTH),
    ("length field 1 less than the payload", "full", lambda q: _lying(pc.MSG_RUN, q, _run(), length=7), 0xFFFF,
     S.FRAME_LENGTH),
    ("CRC off by one bit", "full", lambda q: _lying(pc.MSG_RUN, q, _run(), crc_xor=1), 0xFFFF, S.FRAME_CRC),
    ("protocol version 2", "full", lambda q: _lying(pc.MSG_HELLO, q, b"", version=2), 0xFFFF, S.FRAME_VERSION),
    ("COBS block past the frame end", "full", lambda q: b"\x00\x09\x01\x01\x00", 0xFFFF, S.FRAME_COBS),
    ("frame of 3 bytes", "full", lambda q: b"\x00\x04\x01\x01\x01\x00", 0xFFFF, S.FRAME_SHORT),
    # state "one": only the first 64-byte input is valid
    ("RUN slot 1 when only slot 0 is loaded", "one", lambda q: _frame(pc.MSG_RUN, q, _run(slot=1)), "req",
     S.REQ_INPUT_MISSING),
    ("LOAD_INPUT leaving a gap (offset 65, 64 valid)", "one", lambda q: _frame(pc.MSG_LOAD_INPUT, q, _load(65, 8)),
     "req", S.REQ_INPUT_RANGE),
    ("RUN SEGMENT 1 slot 0 (768 bytes) when 64 are loaded", "one",
     lambda q: _frame(pc.MSG_RUN, q, _run(pc.MODE_SEGMENT, 1)), "req", S.REQ_INPUT_MISSING),
]


def _hello(dev, seq: int, what: str) -> None:
    reply = dev.ask(_frame(pc.MSG_HELLO, seq), f"HELLO after {what}")
    assert (reply.type, reply.seq) == (pc.MSG_INFO, seq), f"HELLO after {what}: {reply}"
    assert m.Info.unpack(reply.payload).session == dev.info.session, f"{what}: the device rebooted"


def _state(dev, state: str) -> None:
    if state == "full":
        assert dev.session.load(0, bytes(range(256)) * (CAPACITY // 256), 1000) == CAPACITY
    elif state == "one":
        assert dev.session.load(0, bytes(64), 1000) == 64
    _drain(dev.link, 0.05)


def test_every_out_of_range_value_gets_its_error_and_the_device_answers_on(device):
    dev = device
    assert (dev.info.input_capacity, dev.info.n_segments, dev.info.input_bytes) == (CAPACITY, 3, 64)
    state, seen = "empty", set()
    for i, (what, need, wire, reply_seq, code) in enumerate(CASES):
        if need != state:
            _state(dev, need)
            state = need
        seq = 1000 + 2 * i
        reply = dev.ask(wire(seq), what)
        want_seq = seq if reply_seq == "req" else reply_seq
        assert reply.type == E, f"{what}: {reply.type_name} instead of ERROR"
        err = m.Error.unpack(reply.payload)
        assert (reply.seq, pc.ERROR_NAMES.get(err.code)) == (want_seq, code.name), what
        _hello(dev, seq + 1, what)
        seen.add(code.name)
    assert {n for n, c, _ in pc.ERRORS if 0x0100 < c < 0x0300} == seen  # every frame error and refusal
    # a retransmission is answered from the cache, byte for byte, and not run twice
    wire = _frame(pc.MSG_RUN, 5000, _run(pc.MODE_EARLY_EXIT, 0, 0, (0.5,), repeat=3))
    first, again = dev.ask(wire, "RUN"), dev.ask(wire, "the same RUN again")
    assert first.type == pc.MSG_RESULT and again == first
    window = m.Result.unpack(first.payload).window
    third = dev.ask(_frame(pc.MSG_RUN, 5001, _run(pc.MODE_EARLY_EXIT, 0, 0, (0.5,), repeat=3)), "next RUN")
    assert m.Result.unpack(third.payload).window == (window + 1 if window else 0)
    # and the device still works through the session layer; a patience larger than any count (which
    # ExitPolicy accepts) never leaves early, and is not converted to an int that would overflow
    res = dev.session.run(m.Run(pc.MODE_CHAIN, 2, 0, (), 1, 0))
    assert (res.exit, len(res.ticks), len(res.logits)) == (2, 3, 10)
    for patience in (7e4, 1e30):
        res = dev.session.run(m.Run(pc.MODE_EARLY_EXIT, 0, pc.POLICY_PATIENCE, (patience,), 1, 0))
        assert (res.exit, len(res.ticks)) == (2, 3), patience
    assert dev.alive() is None
    if dev.stderr is not None:
        assert dev.stderr.read_bytes() == b"", dev.stderr.read_text(errors="replace")[-2000:]
