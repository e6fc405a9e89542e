"""Message payloads and the one table of constants the C header mirrors."""
import re
import struct

import pytest

from tinyexit.firmware_bridge.protocol import messages as m
from tinyexit.firmware_bridge.protocol import constants as pc
from tinyexit.firmware_bridge.protocol.framing import ProtocolError
from tinyexit.exit_policy import POLICY_IDS


def test_status_codes_unique_and_grouped_by_range():
    codes = [c for _, c, _ in pc.ERRORS]
    names = [n for n, _, _ in pc.ERRORS]
    assert len(set(codes)) == len(codes) and len(set(names)) == len(names)
    for name, code, _ in pc.ERRORS:
        group = {"OK": 0x00, "FRAME": 0x01, "REQ": 0x02, "DEV": 0x03}[name.split("_")[0]]
        assert code >> 8 == group, name
    assert pc.Status.FRAME_CRC == 0x0103 and pc.error_range(0x0205) == "request"


def test_policy_ids_come_from_exit_policy():
    assert (pc.POLICY_MAX_SOFTMAX, pc.POLICY_ENTROPY, pc.POLICY_PATIENCE, pc.POLICY_CALIBRATED) == \
        tuple(POLICY_IDS[k] for k in ("max_softmax", "entropy", "patience", "calibrated"))


def test_c_header_mirrors_every_constant():
    text = pc.c_header()
    assert "#define TX_MAX_PAYLOAD 1024u" in text and "#define TX_MSG_RESULT 0x83u" in text
    assert "#define TX_CAP_FULL_ALL_EXITS 0x40u" in text and "#define TX_MAX_ENCODED_FRAME 1039u" in text
    listed = re.findall(r"X\((\w+), 0x([0-9A-F]{4}),", text)
    assert [(n, int(c, 16)) for n, c in listed] == [(n, c) for n, c, _ in pc.ERRORS]
    assert text == pc.c_header()  # deterministic: the firmware's copy can be compared byte for byte


def test_sizes_match_the_spec():
    assert pc.MAX_ENCODED_FRAME == pc.HEADER_SIZE + pc.MAX_PAYLOAD + pc.CRC_SIZE + 5
    assert m._RUN.size == pc.RUN_FIXED_SIZE and m._RESULT.size == pc.RESULT_FIXED_SIZE
    assert m._INFO.size == pc.INFO_FIXED_SIZE


def test_run_layout_is_byte_exact():
    run = m.Run(pc.MODE_EARLY_EXIT, 0, pc.POLICY_CALIBRATED, (0.5, 0.25), 3, 7)
    assert run.pack().hex() == "02000302" "0300" "0700" "0000003f" "0000803e"
    assert m.Run.unpack(run.pack()) == run


def test_result_round_trip_and_layout():
    res = m.Result(pc.MODE_CHAIN, 2, (1, 2**40, 3), (-128, 0, 127), 1_000_000_000, 5, 77, 9, pc.RESULT_FLAG_WINDOW)
    raw = res.pack()
    assert len(raw) == pc.RESULT_FIXED_SIZE + 3 * 8 + 3
    assert raw[:4] == bytes([pc.MODE_CHAIN, 2, 3, pc.RESULT_FLAG_WINDOW]) and raw[-3:] == b"\x80\x00\x7f"
    assert m.Result.unpack(raw) == res


def test_info_round_trip_truncates_strings():
    info = m.Info(1, 3, pc.CAP_CHAIN, 512, 10, 10**9, 64, 4096, 42, 0b1111, bytes(range(32)), "x" * 40, "rt", "v")
    back = m.Info.unpack(info.pack())
    assert back.device == "x" * pc.MAX_STRING and back.hash_hex == bytes(range(32)).hex()
    assert back.to_dict()["capabilities"] == ["chain"]


@pytest.mark.parametrize("payload, code", [
    (b"\x01" * 7, pc.Status.REQ_PAYLOAD_SIZE),
    (struct.pack("<BBBBHH", 2, 0, 0, 17, 1, 0) + bytes(68), pc.Status.REQ_BAD_PARAMS),
    (struct.pack("<BBBBHH", 2, 0, 0, 1, 1, 0), pc.Status.REQ_PAYLOAD_SIZE),
    (struct.pack("<BBBBHH", 9, 0, 0, 0, 1, 0), pc.Status.REQ_BAD_MODE),
    (struct.pack("<BBBBHH", 1, 0, 0, 0, 0, 0), pc.Status.REQ_BAD_REPEAT),
    (struct.pack("<BBBBHHf", 2, 0, 0, 1, 1, 0, float("nan")), pc.Status.REQ_BAD_PARAMS),
])
def test_run_unpack_refuses(payload, code):
    with pytest.raises(ProtocolError) as info:
        m.Run.unpack(payload)
    assert info.value.code == code


@pytest.mark.parametrize("cls, payload", [
    (m.Result, bytes(23)), (m.Result, bytes(24) + b"\x00"),
    (m.Info, bytes(62)), (m.Ack, bytes(3)), (m.Error, b"\x01\x02\x05ab"), (m.LoadInput, bytes(4)),
])
def test_unpack_checks_sizes(cls, payload):
    with pytest.raises(ProtocolError) as info:
        cls.unpack(payload)
    assert info.value.code == pc.Status.REQ_PAYLOAD_SIZE


def test_error_text_is_bounded_ascii():
    err = m.Error(pc.Status.DEV_RUNTIME, "é" + "x" * 100)
    back = m.Error.unpack(err.pack())
    assert len(back.text) == pc.MAX_ERROR_TEXT and back.describe().startswith("DEV_RUNTIME (0x0302)")


def test_the_spec_example_exchange_decodes():
    """docs/protocol.md's hex example must stay what the code sends."""
    from pathlib import Path

    from tinyexit.firmware_bridge.protocol.framing import Frame, FrameDecoder, cobs_decode

    text = (Path(__file__).parents[2] / "docs" / "protocol.md").read_text()
    blocks = re.findall(r"  raw  (.*?)\n  wire (.*?)(?:\n(?=\S)|\n```)", text, re.S)
    checked = 0
    for raw, wire in blocks:
        if ".." in raw:  # abbreviated in the page
            continue
        r = bytes.fromhex(raw.replace("|", " "))
        w = bytes.fromhex(re.sub(r"\(.*?\)", "", wire))
        body = w[1:-1] if w[0] == 0 else w[:-1]
        assert cobs_decode(body) == r
        assert isinstance(FrameDecoder().feed(w)[-1], Frame)
        checked += 1
    assert checked == 6


def test_the_firmware_header_is_the_rendered_one():
    from pathlib import Path

    header = Path(__file__).parents[2] / "firmware_bridge" / "firmware" / "core" / "tinyexit_protocol.h"
    if not header.is_file():
        pytest.skip("no C firmware in this checkout")
    assert header.read_text() == pc.c_header(), "re-render it: python -m tinyexit.firmware_bridge.protocol.constants"
