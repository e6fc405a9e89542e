"""The agent answers each request in the encoding it arrived in, advertises CAP_FEC, and turns a reply too
long for one frame into an ERROR reply instead of dying."""
import pytest

from tinyexit.bundle import load_bundle
from tinyexit.firmware_bridge.agent.runtime import make_backend
from tinyexit.firmware_bridge.agent.server import AgentConfig, DeviceCore
from tinyexit.firmware_bridge.protocol import constants as pc
from tinyexit.firmware_bridge.protocol import messages as m
from tinyexit.firmware_bridge.protocol.framing import Frame, FrameDecoder, encode_frame


@pytest.fixture(scope="module")
def device(fixture_run_template):
    art = load_bundle(fixture_run_template / "export" / "classifier")
    return DeviceCore(art, make_backend(art), AgentConfig(port="-", artifact=str(art.dir)))


def _exchange(dev, frame: Frame, fec: bool) -> tuple[bytes, Frame]:
    (request,) = FrameDecoder().feed(encode_frame(frame, fec=fec))
    assert request.fec == fec
    wire = dev.handle(request)
    (reply,) = FrameDecoder().feed(wire)
    return wire, reply


def test_replies_in_the_encoding_of_the_request(device):
    for fec in (False, True, False):
        wire, reply = _exchange(device, Frame(pc.MSG_HELLO, 5), fec)
        assert reply.type == pc.MSG_INFO and reply.seq == 5 and reply.fec == fec
        assert m.Info.unpack(reply.payload).capabilities & pc.CAP_FEC
        assert wire == encode_frame(Frame(pc.MSG_INFO, 5, reply.payload), fec=fec)
    data = bytes(range(64))
    _, ack = _exchange(device, Frame(pc.MSG_LOAD_INPUT, 6, m.LoadInput(0, data).pack()), True)
    assert ack.fec and m.Ack.unpack(ack.payload).valid_bytes == 64
    # a retransmission in the other encoding: answered from the cache, byte for byte as the first time
    first = device.handle(FrameDecoder().feed(encode_frame(Frame(pc.MSG_RUN, 7, m.Run(pc.MODE_CHAIN, 0).pack()),
                                                           fec=True))[0])
    again = device.handle(FrameDecoder().feed(encode_frame(Frame(pc.MSG_RUN, 7, m.Run(pc.MODE_CHAIN, 0).pack())))[0])
    assert first == again and FrameDecoder().feed(first)[0].fec
    # an undecodable frame: a plain NACK, whatever it was meant to be
    (err,) = FrameDecoder().feed(b"\x07\x07\x07" + bytes(range(1, 40)) + b"\x00")
    nack = FrameDecoder().feed(device.handle(err))[0]
    assert nack.seq == pc.SEQ_UNSOLICITED and nack.type == pc.MSG_ERROR and not nack.fec


def test_a_reply_longer_than_one_frame_is_an_error_reply(device, monkeypatch):
    monkeypatch.setattr(DeviceCore, "_dispatch", lambda self, frame: (pc.MSG_RESULT, bytes(pc.MAX_PAYLOAD + 1)))
    for fec in (False, True):
        _, reply = _exchange(device, Frame(pc.MSG_RUN, 11 + fec, m.Run(pc.MODE_CHAIN, 0).pack()), fec)
        err = m.Error.unpack(reply.payload)
        assert reply.type == pc.MSG_ERROR and reply.seq == 11 + fec and reply.fec == fec
        assert err.code == pc.Status.FRAME_TOO_LONG and "payload of 1025 bytes" in err.text
