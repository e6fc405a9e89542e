"""The host session against a real agent through a fault-injecting pty bridge: retries, caching, resets, silence."""
import re
import time

import numpy as np
import pytest

from tinyexit.errors import UserError
from tinyexit.firmware_bridge.protocol import messages as m
from tinyexit.firmware_bridge.protocol import constants as pc
from tinyexit.bundle import load_bundle, load_test_inputs
from tinyexit.firmware_bridge.harness.faults import FaultConfig, PtyBridge
from tinyexit.firmware_bridge.protocol.framing import Frame, FrameDecoder
from tinyexit.firmware_bridge.harness.link import PtyPair, SerialLink
from tinyexit.firmware_bridge.harness.reference import compute_reference
from tinyexit.firmware_bridge.harness.session import DeviceReset, DeviceSession, SessionConfig

FAST = SessionConfig(reply_timeout_s=0.5, max_retries=3, boot_timeout_s=30)


@pytest.fixture(scope="module")
def data(fixture_run_template):
    art = load_bundle(fixture_run_template / "export" / "classifier")
    x, _ = load_test_inputs(art, limit=4)
    return art, x, compute_reference(art, x, art.policy)


def _connect(bridge, spawn_agent, art):
    proc = spawn_agent(bridge.device_path, art.dir)
    link = SerialLink(bridge.host_path)
    session = DeviceSession(link, FAST, alive=lambda: None if proc.poll() is None else f"exit {proc.returncode}")
    return proc, link, session


def _await_boot(link, timeout_s: float = 60.0) -> None:
    """Wait for the agent's unsolicited boot INFO, so a slow start (a loaded machine) costs no HELLO retries
    that would shift the frame counts a test's faults are aimed at."""
    dec, deadline = FrameDecoder(), time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(isinstance(e, Frame) and e.type == pc.MSG_INFO and e.seq == pc.SEQ_UNSOLICITED
               for e in dec.feed(link.read(0.2))):
            return
    raise AssertionError(f"the agent sent no boot INFO in {timeout_s} s")


def test_silent_device_times_out_naming_the_port():
    pair = PtyPair()
    try:
        s = DeviceSession(pair.link, SessionConfig(reply_timeout_s=0.1, max_retries=2, boot_timeout_s=0.4))
        t0 = time.monotonic()
        with pytest.raises(UserError, match=r"no answer from the device at pty /dev/pts/\d+ to HELLO after \d+ tries "
                                            r"\(0\.4 s, nothing received for 0\.4 s\); check that it runs .* \(--baud\)"):
            s.handshake()
        # The silence budget is reply_timeout_s x (max_retries + 1); before any round trip was measured the
        # retransmission timeout is the configured one.
        with pytest.raises(UserError, match=r"to RUN after 3 tries \(0\.3 s, nothing received for 0\.3 s\)"):
            s.request(pc.MSG_RUN, m.Run(pc.MODE_CHAIN).pack())
        assert time.monotonic() - t0 < 3 and s.stats.timeouts == 3 and s.stats.retries == 2
    finally:
        pair.close()


def test_a_device_that_only_nacks_is_alive_and_the_message_says_so(data, spawn_agent):
    """Every request frame arrives damaged: the agent NACKs each one.  The session is not fooled into
    'no answer': it gives up after stall_s and says what the device answered, and the time spent."""
    art = data[0]
    bridge = PtyBridge(to_device=FaultConfig(corrupt_frames=tuple(range(1, 100_000))))
    proc, link, s = _connect(bridge, spawn_agent, art)
    # plain frames (FEC would repair the one flipped bit of each: auto probes with FEC from the first request)
    s.cfg = SessionConfig(reply_timeout_s=2.0, max_retries=5, boot_timeout_s=30, stall_s=1.0, fec="off")
    try:
        _await_boot(link)
        s.handshake()                                  # frame 0 passes undamaged
        t0 = time.monotonic()
        with pytest.raises(UserError) as err:
            s.request(pc.MSG_RUN, m.Run(pc.MODE_CHAIN).pack())
        spent = time.monotonic() - t0
        msg = str(err.value)
        got = re.fullmatch(r"the device at \S+ is answering but no RUN got through in ([\d.]+) s \((\d+) tries; it "
                           r"answered with (\d+) NACKs(, \d+ silent waits?)?; \d+ bytes received\); the line damages "
                           r"too many bytes: check the cable, its length and shielding, and the baud rate \(--baud\)",
                           msg)
        assert got, msg
        assert 1.0 <= float(got[1]) <= spent < 3.0
        assert int(got[3]) == s.stats.nacks and int(got[3]) >= int(got[2]) - 1 > 3
    finally:
        link.close()
        bridge.close()


def test_a_line_that_goes_dead_mid_session_is_named_as_such(data, spawn_agent):
    art = data[0]
    bridge = PtyBridge()
    proc, link, s = _connect(bridge, spawn_agent, art)
    s.cfg = SessionConfig(reply_timeout_s=0.2, max_retries=4, boot_timeout_s=30)
    try:
        s.handshake()
        bridge.set_dead()
        t0 = time.monotonic()
        with pytest.raises(UserError, match=r"no answer from the device at \S+ to RUN after \d+ tries \(1\.\d s, "
                                            r"nothing received for 1\.\d s\); it answered earlier in this run, then "
                                            r"went silent"):
            s.request(pc.MSG_RUN, m.Run(pc.MODE_CHAIN).pack())
        assert 1.0 <= time.monotonic() - t0 < 2.0     # the silence budget: 0.2 s x (4 + 1)
    finally:
        link.close()
        bridge.close()


@pytest.mark.parametrize("direction", ["to_device", "to_host"])
def test_a_garbled_frame_is_retried_counted_and_never_run_twice(data, spawn_agent, direction):
    art, x, ref = data
    # Frames counted per direction: to_device 0 HELLO, 1 LOAD, 2 RUN; to_host 0 boot INFO, 1 INFO, 2 ACK, 3 RESULT.
    faults = {direction: FaultConfig(corrupt_frames=(2,) if direction == "to_device" else (3,))}
    bridge = PtyBridge(**faults)
    _, link, s = _connect(bridge, spawn_agent, art)
    # Only the injected fault may cost a retry: the agent is up before HELLO, and a reply has seconds to come.
    # Plain frames: FEC (auto probes with it) would repair the one flipped bit.
    s.cfg = SessionConfig(reply_timeout_s=3.0, max_retries=3, boot_timeout_s=30, fec="off")
    try:
        _await_boot(link)
        s.handshake()
        s.load(0, x[:1].tobytes(), 1000)
        res = s.run(m.Run(pc.MODE_CHAIN, 2))
        assert np.array_equal(res.logits, ref.exit_logits[2, 0])
        assert s.stats.retries == 1 and bridge.counts()[direction]["frames_corrupted"] == 1
        stats = s.stats.to_dict()
        if direction == "to_host":  # our decoder saw the damage; the agent answered the retry from its cache
            assert stats["corrupt_frames"] == 1 and stats["resyncs"] == 1
        else:                       # the agent could not decode it and NACKed at once, no timeout needed
            assert stats["nacks"] == 1 and stats["timeouts"] == 0
        res2 = s.run(m.Run(pc.MODE_EARLY_EXIT, 0, art.policy.policy_id, art.policy.params))
        assert res2.exit == ref.early_exit[0]
    finally:
        link.close()
        bridge.close()


def test_device_restart_is_noticed_and_the_session_recovers(data, spawn_agent):
    art, x, ref = data
    bridge = PtyBridge()
    proc, link, s = _connect(bridge, spawn_agent, art)
    s.alive = lambda: None  # the device process is replaced on purpose
    try:
        first = s.handshake()
        s.load(0, x[:2].tobytes(), 1000)
        proc.kill()
        proc.wait()
        spawn_agent(bridge.device_path, art.dir)  # the "device" reboots and announces itself
        with pytest.raises(DeviceReset) as info:
            s.run(m.Run(pc.MODE_CHAIN, 0, slot=1))
        assert info.value.info.session != first.session and s.stats.resets == 1
        again = s.handshake()
        assert again.session == info.value.info.session
        s.load(0, x[:2].tobytes(), 1000)
        assert np.array_equal(s.run(m.Run(pc.MODE_CHAIN, 0, slot=1)).logits, ref.exit_logits[0, 1])
    finally:
        link.close()
        bridge.close()


def test_oversize_length_field_is_rejected_and_the_agent_keeps_answering(data, spawn_agent):
    art = data[0]
    bridge = PtyBridge()
    _, link, s = _connect(bridge, spawn_agent, art)
    try:
        s.handshake()
        import struct
        from tinyexit.firmware_bridge.protocol.framing import cobs_encode, crc32

        raw = struct.pack("<BBHH", 1, pc.MSG_LOAD_INPUT, 40, 65000) + bytes(12)
        link.write(b"\x00" + cobs_encode(raw + struct.pack("<I", crc32(raw))) + b"\x00")
        dec, got = FrameDecoder(), []
        deadline = time.monotonic() + 5
        while not got and time.monotonic() < deadline:
            got = [e for e in dec.feed(link.read(0.2)) if isinstance(e, Frame)]
        assert got[0].seq == pc.SEQ_UNSOLICITED
        assert m.Error.unpack(got[0].payload).code == pc.Status.FRAME_TOO_LONG
        assert s.handshake().hash_hex == art.artifact_hash
    finally:
        link.close()
        bridge.close()


def test_noisy_link_still_gives_exact_results(data, spawn_agent):
    art, x, ref = data
    noise = FaultConfig(corrupt=0.003, drop=0.002, seed=3)
    bridge = PtyBridge(to_device=noise, to_host=FaultConfig(corrupt=0.003, drop=0.002, seed=4))
    _, link, s = _connect(bridge, spawn_agent, art)
    s.cfg = SessionConfig(reply_timeout_s=0.3, max_retries=20, boot_timeout_s=30, fec="off")  # retransmission alone
    try:
        s.handshake()
        done = []
        assert s.load(0, x.tobytes(), 128, progress=done.append) == x.nbytes
        assert done[-1] == x.nbytes and done == sorted(set(done))  # progress after every chunk, never backwards
        for i in range(len(x)):
            for _ in range(5):
                res = s.run(m.Run(pc.MODE_EARLY_EXIT, 0, art.policy.policy_id, art.policy.params, slot=i))
                assert res.exit == ref.early_exit[i] and np.array_equal(res.logits, ref.exit_logits[res.exit, i])
        counts = bridge.counts()
        assert counts["to_device"].get("corrupted", 0) + counts["to_host"].get("corrupted", 0) > 0
        assert s.stats.retries > 0
    finally:
        link.close()
        bridge.close()
