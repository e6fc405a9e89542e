"""The recorded transcripts: stable bytes, the decoder's events, and a device's replies."""
import importlib.util
from pathlib import Path

import pytest

from tinyexit.firmware_bridge.protocol import constants as pc
from tinyexit.firmware_bridge.agent.server import AgentConfig, DeviceCore
from tinyexit.firmware_bridge.agent.runtime import make_backend
from tinyexit.bundle import load_bundle
from tinyexit.firmware_bridge.protocol.framing import Frame, FrameDecoder
from tinyexit.firmware_bridge.protocol.messages import Error

HERE = Path(__file__).parent / "transcripts"


def _script():
    spec = importlib.util.spec_from_file_location("make_transcripts", HERE / "make_transcripts.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_checked_in_files_equal_what_the_script_builds():
    built = _script().build_all()
    on_disk = {p.name: p.read_bytes() for p in HERE.iterdir() if p.suffix in (".bin", ".expect", ".replies")}
    assert sorted(on_disk) == sorted(built)
    for name, content in built.items():
        assert on_disk[name] == content, f"{name} differs; run make_transcripts.py and review the diff"


def _event_line(e) -> str:
    if isinstance(e, Frame):
        return f"frame 0x{e.type:02X} {e.seq} {e.payload.hex() or '-'}"
    return f"error {e.name} 0x{e.code:04X}"


@pytest.mark.parametrize("name", sorted(p.stem for p in HERE.glob("*.expect")))
@pytest.mark.parametrize("step", [1, 7, 100000])
def test_decoder_reports_what_the_transcript_expects(name, step):
    data = (HERE / f"{name}.bin").read_bytes()
    expect = (HERE / f"{name}.expect").read_text().splitlines()
    dec, events = FrameDecoder(), []
    for i in range(0, len(data), step):
        events += dec.feed(data[i:i + step])
    assert [_event_line(e) for e in events] == expect


@pytest.fixture(scope="module")
def core(fixture_run_template):
    art = load_bundle(fixture_run_template / "export" / "classifier")
    return art, make_backend(art)


@pytest.mark.parametrize("name", sorted(p.stem for p in HERE.glob("*.replies")))
def test_device_replies_as_the_transcript_expects(core, name):
    art, backend = core
    device = DeviceCore(art, backend, AgentConfig(port="-", artifact=str(art.dir)))
    replies, previous = [], None
    for event in FrameDecoder().feed((HERE / f"{name}.bin").read_bytes()):
        wire = device.handle(event)
        (frame,) = FrameDecoder().feed(wire)
        line = f"reply {frame.seq} {pc.MESSAGE_NAMES[frame.type]}"
        if frame.type == pc.MSG_ERROR:
            line += f" {pc.ERROR_NAMES[Error.unpack(frame.payload).code]}"
        elif wire == previous:
            line += " same-as-previous"
        replies.append(line)
        previous = wire
    assert replies == (HERE / f"{name}.replies").read_text().splitlines()
    if name == "session_duplicate":
        assert device.counts["duplicates"] == 1
