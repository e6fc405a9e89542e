"""Every length, index and count a device receives is checked before use: one out-of-range value per row, sent to
the host agent and to the firmware under QEMU through the harness's session layer.  Each gets an ERROR frame with
the spec's code, and the device keeps answering with the same results and the same loaded inputs."""
import struct
import time

import numpy as np
import pytest

from tinyexit.firmware_bridge.protocol import messages as m
from tinyexit.firmware_bridge.protocol import constants as pc
from tinyexit.bundle import load_bundle, load_test_inputs
from tinyexit.firmware_bridge.protocol.framing import Frame, FrameDecoder, cobs_encode, crc32, encode_frame
from tinyexit.firmware_bridge.harness.link import PtyPair, SerialLink
from tinyexit.firmware_bridge.harness.session import DeviceError, DeviceSession, SessionConfig

S = pc.Status
LOADED = 2  # samples loaded before every row: slots 0 and 1 valid, slot 2 not


def _run(mode, segment=0, policy=0, params=(), repeat=1, slot=0, n_params=None, size=None) -> bytes:
    n = len(params) if n_params is None else n_params
    raw = struct.pack("<BBBBHH", mode, segment, policy, n, repeat, slot) + struct.pack(f"<{len(params)}f", *params)
    return raw if size is None else (raw + bytes(size))[:size]


def _request_rows(ctx) -> list:
    """(name, message type, payload, expected status) for requests that are well framed."""
    info, n, cap, seg_in = ctx["info"], ctx["info"].n_segments, ctx["info"].input_capacity, ctx["seg_in"]
    per = info.input_bytes
    ee = pc.MODE_EARLY_EXIT
    return [
        ("LOAD_INPUT without data", pc.MSG_LOAD_INPUT, struct.pack("<I", 0), S.REQ_PAYLOAD_SIZE),
        ("LOAD_INPUT of 3 bytes", pc.MSG_LOAD_INPUT, b"\x00\x00\x00", S.REQ_PAYLOAD_SIZE),
        ("LOAD_INPUT leaving a gap", pc.MSG_LOAD_INPUT, m.LoadInput(LOADED * per + 1, b"\x01").pack(),
         S.REQ_INPUT_RANGE),
        ("LOAD_INPUT offset 2**32-1", pc.MSG_LOAD_INPUT, m.LoadInput(0xFFFFFFFF, b"\x01").pack(), S.REQ_INPUT_RANGE),
        ("LOAD_INPUT past the capacity", pc.MSG_LOAD_INPUT, "fill", S.REQ_INPUT_RANGE),
        ("RUN of 7 bytes", pc.MSG_RUN, bytes(7), S.REQ_PAYLOAD_SIZE),
        ("RUN with 17 params", pc.MSG_RUN, _run(ee, params=(0.5,) * 17), S.REQ_BAD_PARAMS),
        ("RUN claiming 255 params", pc.MSG_RUN, _run(ee, n_params=255), S.REQ_BAD_PARAMS),
        ("RUN claiming 2 params, carrying 1", pc.MSG_RUN, _run(ee, params=(0.5,), n_params=2), S.REQ_PAYLOAD_SIZE),
        ("RUN with a trailing byte", pc.MSG_RUN, _run(ee, params=(0.5,)) + b"\x00", S.REQ_PAYLOAD_SIZE),
        ("RUN mode 4", pc.MSG_RUN, _run(4), S.REQ_BAD_MODE),
        ("RUN mode 255", pc.MSG_RUN, _run(255), S.REQ_BAD_MODE),
        ("RUN repeat 0", pc.MSG_RUN, _run(ee, params=(0.5,), repeat=0), S.REQ_BAD_REPEAT),
        ("RUN threshold NaN", pc.MSG_RUN, _run(ee, params=(float("nan"),)), S.REQ_BAD_PARAMS),
        ("RUN threshold +inf", pc.MSG_RUN, _run(ee, params=(float("inf"),)), S.REQ_BAD_PARAMS),
        ("RUN chain past the last segment", pc.MSG_RUN, _run(pc.MODE_CHAIN, n), S.REQ_BAD_SEGMENT),
        ("RUN chain segment 255", pc.MSG_RUN, _run(pc.MODE_CHAIN, 255), S.REQ_BAD_SEGMENT),
        ("RUN segment past the last", pc.MSG_RUN, _run(pc.MODE_SEGMENT, n), S.REQ_BAD_SEGMENT),
        ("RUN full variant 2", pc.MSG_RUN, _run(pc.MODE_FULL, 2), S.REQ_BAD_SEGMENT),
        ("RUN policy id 4", pc.MSG_RUN, _run(ee, policy=4, params=(0.5,)), S.REQ_BAD_POLICY),
        ("RUN policy id 255", pc.MSG_RUN, _run(ee, policy=255, params=(0.5,)), S.REQ_BAD_POLICY),
        ("RUN max_softmax without params", pc.MSG_RUN, _run(ee), S.REQ_BAD_PARAMS),
        ("RUN threshold 1.5", pc.MSG_RUN, _run(ee, params=(1.5,)), S.REQ_BAD_PARAMS),
        ("RUN threshold -0.5", pc.MSG_RUN, _run(ee, params=(-0.5,)), S.REQ_BAD_PARAMS),
        ("RUN patience 2.5", pc.MSG_RUN, _run(ee, policy=2, params=(2.5,)), S.REQ_BAD_PARAMS),
        ("RUN patience 0", pc.MSG_RUN, _run(ee, policy=2, params=(0.0,)), S.REQ_BAD_PARAMS),
        ("RUN slot past the buffer", pc.MSG_RUN, _run(pc.MODE_CHAIN, 0, slot=cap // per), S.REQ_BAD_SLOT),
        ("RUN slot 65535", pc.MSG_RUN, _run(pc.MODE_CHAIN, 0, slot=0xFFFF), S.REQ_BAD_SLOT),
        ("RUN slot not loaded", pc.MSG_RUN, _run(pc.MODE_CHAIN, 0, slot=LOADED), S.REQ_INPUT_MISSING),
        ("RUN segment k>0, slot past the buffer", pc.MSG_RUN, _run(pc.MODE_SEGMENT, n - 1, slot=cap // seg_in[-1]),
         S.REQ_BAD_SLOT),
        ("HELLO with a payload", pc.MSG_HELLO, b"\x00", S.REQ_PAYLOAD_SIZE),
        ("RESET with a payload", pc.MSG_RESET, b"\x01\x02", S.REQ_PAYLOAD_SIZE),
        ("type 0x05 with a payload", 0x05, b"\x00", S.REQ_UNKNOWN_TYPE),
        ("type 0x7F", 0x7F, b"", S.REQ_UNKNOWN_TYPE),
        ("a reply type (INFO) sent to the device", pc.MSG_INFO, b"", S.REQ_UNKNOWN_TYPE),
        ("type 0xFF", 0xFF, bytes(3), S.REQ_UNKNOWN_TYPE),
    ]


def _raw(version, msg_type, seq, length, payload) -> bytes:
    raw = struct.pack("<BBHH", version, msg_type, seq, length) + payload
    return b"\x00" + cobs_encode(raw + struct.pack("<I", crc32(raw))) + b"\x00"


def _frame_rows(info) -> list:
    """(name, bytes on the wire, expected status, expected seq of the ERROR) for frames a device cannot decode."""
    good = encode_frame(Frame(pc.MSG_HELLO, 40), lead=True)
    flipped = bytearray(good)
    flipped[4] ^= 0x08
    return [
        ("length field above max payload", _raw(1, pc.MSG_LOAD_INPUT, 40, info.max_payload + 1, bytes(12)),
         S.FRAME_TOO_LONG),
        ("length field 65535", _raw(1, pc.MSG_RUN, 40, 0xFFFF, bytes(8)), S.FRAME_TOO_LONG),
        ("length field short of the payload", _raw(1, pc.MSG_RUN, 40, 4, bytes(8)), S.FRAME_LENGTH),
        ("payload above max payload", _raw(1, pc.MSG_LOAD_INPUT, 40, info.max_payload + 4,
                                           bytes(info.max_payload + 4)), S.FRAME_TOO_LONG),
        ("CRC error", bytes(flipped), S.FRAME_CRC),
        ("protocol version 2", _raw(2, pc.MSG_HELLO, 40, 0, b""), S.FRAME_VERSION),
        ("COBS code past the end", b"\x00\x09\x01\x02\x00", S.FRAME_COBS),
        ("5-byte frame", b"\x00" + cobs_encode(bytes([1, 1, 40, 0, 0])) + b"\x00", S.FRAME_SHORT),
        ("2000 bytes without a delimiter", b"\x00" + b"\x41" * 2000 + b"\x00", S.FRAME_TOO_LONG),
        ("request with the device's seq 0xFFFF", encode_frame(Frame(pc.MSG_HELLO, pc.SEQ_UNSOLICITED), lead=True),
         S.REQ_BAD_SEQ),
    ]


def _error_reply(link, timeout: float = 5.0) -> m.Error:
    dec = FrameDecoder()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for e in dec.feed(link.read(0.1)):
            if isinstance(e, Frame) and e.type == pc.MSG_ERROR and e.seq == pc.SEQ_UNSOLICITED:
                return m.Error.unpack(e.payload)
    raise AssertionError("no ERROR frame arrived")


def _drive_table(session: DeviceSession, art, x: np.ndarray) -> dict:
    """Run every row; returns {row name: (expected, got)} for rows whose answer differs from the spec."""
    info = session.handshake(30)
    policy = art.policy
    ctx = {"info": info, "seg_in": [art.segment_input_bytes(k) for k in range(art.n_segments)]}
    per = info.input_bytes
    chunk = min(info.max_payload, pc.MAX_PAYLOAD) - 4

    def reload():
        assert session.load(0, x[:LOADED].tobytes(), chunk) == LOADED * per

    def still_answers():
        """Same exits and logits as before the row, inputs still loaded exactly as before."""
        for slot in range(LOADED):
            res = session.run(m.Run(pc.MODE_EARLY_EXIT, 0, policy.policy_id, policy.params, 1, slot))
            assert (res.exit, res.logits) == baseline[slot][:2]
        with pytest.raises(DeviceError) as exc:
            session.run(m.Run(pc.MODE_CHAIN, 0, 0, (), 1, LOADED))
        assert exc.value.error.code == S.REQ_INPUT_MISSING

    reload()
    baseline = [(r.exit, r.logits) for r in (session.run(m.Run(pc.MODE_EARLY_EXIT, 0, policy.policy_id,
                                                                 policy.params, 1, s)) for s in range(LOADED))]
    wrong = {}
    for name, msg_type, payload, want in _request_rows(ctx):
        if payload == "fill":  # valid bytes right up to the end, then one byte too many
            session.load(0, bytes(info.input_capacity - 8), chunk)
            payload = m.LoadInput(info.input_capacity - 8, bytes(9)).pack()
        try:
            session.request(msg_type, payload)
            got = S.OK
        except DeviceError as exc:
            got = exc.error.code
        if got != want:
            wrong[name] = (S(want).name, pc.ERROR_NAMES.get(got, hex(got)))
        if name == "LOAD_INPUT past the capacity":
            reload()
        still_answers()
    for name, wire, want in _frame_rows(info):
        session.link.write(wire)
        got = _error_reply(session.link).code
        if got != want:
            wrong[name] = (S(want).name, pc.ERROR_NAMES.get(got, hex(got)))
        assert session.handshake(5).session == info.session  # same device, no reboot
        still_answers()
    return wrong


@pytest.fixture
def art_inputs(rel_run):
    art = load_bundle(rel_run / "export" / "classifier")
    x, _ = load_test_inputs(art, limit=4)
    return art, x


def test_every_out_of_range_value_gets_an_error_from_the_host_agent(art_inputs, spawn_agent):
    art, x = art_inputs
    pair = PtyPair()
    try:
        agent = spawn_agent(pair.slave_path, art.dir)
        session = DeviceSession(pair.link, SessionConfig(reply_timeout_s=2.0, max_retries=2),
                                alive=lambda: None if agent.poll() is None else f"exit {agent.returncode}")
        assert _drive_table(session, art, x) == {}
        assert agent.poll() is None
    finally:
        pair.close()


def test_every_out_of_range_value_gets_an_error_from_the_firmware(art_inputs, qemu_device):
    art, x = art_inputs
    url, handle = qemu_device()
    link = SerialLink(url)
    try:
        session = DeviceSession(link, SessionConfig(reply_timeout_s=2.0, max_retries=2), alive=handle.alive)
        assert _drive_table(session, art, x) == {}
        assert handle.alive() is None
    finally:
        link.close()
