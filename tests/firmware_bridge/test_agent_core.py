"""The agent's protocol core on a real artifact: modes, the exit decided on the device, caching, refusals."""
import subprocess
import sys

import numpy as np
import pytest

from tinyexit.firmware_bridge.protocol import messages as m
from tinyexit.firmware_bridge.protocol import constants as pc
from tinyexit.firmware_bridge.agent.server import AgentConfig, DeviceCore
from tinyexit.firmware_bridge.agent.runtime import make_backend
from tinyexit.bundle import load_bundle, load_test_inputs
from tinyexit.firmware_bridge.protocol.framing import Frame, FrameDecoder, ProtocolError
from tinyexit.firmware_bridge.harness.reference import compute_reference


@pytest.fixture(scope="module")
def setup(fixture_run_template):
    art = load_bundle(fixture_run_template / "export" / "classifier")
    x, y = load_test_inputs(art, limit=40)
    return art, make_backend(art), x, compute_reference(art, x, art.policy)


def _device(setup, **kw):
    art, backend, _, _ = setup
    return DeviceCore(art, backend, AgentConfig(port="-", artifact=str(art.dir), **kw))


def _ask(dev, msg_type, seq, payload=b""):
    (frame,) = FrameDecoder().feed(dev.handle(Frame(msg_type, seq, payload)))
    assert frame.seq == seq
    return frame


def test_hello_reports_the_artifact(setup):
    art = setup[0]
    info = m.Info.unpack(_ask(_device(setup), pc.MSG_HELLO, 0).payload)
    assert info.hash_hex == art.artifact_hash and info.tick_hz == 10**9
    assert (info.n_segments, info.n_logits, info.input_bytes) == (3, 10, 64)
    assert info.capabilities & pc.CAP_FULL and info.capabilities & pc.CAP_FULL_ALL_EXITS
    assert info.policies == 0b1111 and info.runtime == pc.RUNTIME_LITERT


def test_every_mode_matches_the_host_reference(setup):
    art, _, x, ref = setup
    dev = _device(setup)
    ack = m.Ack.unpack(_ask(dev, pc.MSG_LOAD_INPUT, 1, m.LoadInput(0, x.tobytes()[:1000]).pack()).payload)
    ack = m.Ack.unpack(_ask(dev, pc.MSG_LOAD_INPUT, 2, m.LoadInput(1000, x.tobytes()[1000:]).pack()).payload)
    assert ack.valid_bytes == x.nbytes
    policy = art.policy
    seq, exits = 3, []
    for i in range(len(x)):
        run = m.Run(pc.MODE_EARLY_EXIT, 0, policy.policy_id, policy.params, 1, i)
        res = m.Result.unpack(_ask(dev, pc.MSG_RUN, seq, run.pack()).payload)
        seq += 1
        exits.append(res.exit)
        assert res.exit == ref.early_exit[i] and len(res.ticks) == res.exit + 1
        assert np.array_equal(res.logits, ref.exit_logits[res.exit, i])
        for k in range(3):
            res = m.Result.unpack(_ask(dev, pc.MSG_RUN, seq, m.Run(pc.MODE_CHAIN, k, slot=i).pack()).payload)
            seq += 1
            assert res.exit == k and len(res.ticks) == k + 1 and res.decision_ticks == 0
            assert np.array_equal(res.logits, ref.exit_logits[k, i])
        res = m.Result.unpack(_ask(dev, pc.MSG_RUN, seq, m.Run(pc.MODE_FULL, slot=i).pack()).payload)
        seq += 1
        assert np.array_equal(res.logits, ref.full_logits[i]) and len(res.ticks) == 1
        res = m.Result.unpack(_ask(dev, pc.MSG_RUN, seq, m.Run(pc.MODE_FULL, pc.FULL_ALL_EXITS, slot=i).pack()).payload)
        seq += 1
        assert np.array_equal(res.logits, ref.all_exits_logits[i]) and res.exit == 2
    assert len(set(exits)) == 3  # the fixture's threshold sends samples down every path


def test_single_segment_mode_runs_on_loaded_features(setup):
    art, backend, x, ref = setup
    _, feats = backend.segment(0, x[5][None])
    dev = _device(setup)
    _ask(dev, pc.MSG_LOAD_INPUT, 1, m.LoadInput(0, np.ascontiguousarray(feats).tobytes()).pack())
    res = m.Result.unpack(_ask(dev, pc.MSG_RUN, 2, m.Run(pc.MODE_SEGMENT, 1).pack()).payload)
    assert res.exit == 1 and np.array_equal(res.logits, ref.exit_logits[1, 5]) and len(res.ticks) == 1


def test_repeat_sums_ticks_and_duplicates_are_not_rerun(setup):
    x = setup[2]
    dev = _device(setup)
    _ask(dev, pc.MSG_LOAD_INPUT, 1, m.LoadInput(0, x[0].tobytes()).pack())
    req = Frame(pc.MSG_RUN, 2, m.Run(pc.MODE_CHAIN, 2, repeat=50).pack())
    first = dev.handle(req)
    executed = dev.counts["executed"]
    assert dev.handle(req) == first and dev.counts == {**dev.counts, "executed": executed, "duplicates": 1}
    res = m.Result.unpack(FrameDecoder().feed(first)[0].payload)
    assert res.repeat == 50 and all(t > 0 for t in res.ticks)
    other = dev.handle(Frame(pc.MSG_RUN, 2, m.Run(pc.MODE_CHAIN, 1).pack()))  # same seq, other request: runs
    assert other != first and dev.counts["executed"] == executed + 1


def test_hello_is_never_cached_and_reset_starts_a_new_session(setup):
    dev = _device(setup)
    a = m.Info.unpack(_ask(dev, pc.MSG_HELLO, 0).payload)
    _ask(dev, pc.MSG_HELLO, 0)
    assert dev.counts["duplicates"] == 0 and dev.counts["executed"] == 2
    _ask(dev, pc.MSG_LOAD_INPUT, 1, m.LoadInput(0, bytes(64)).pack())
    b = m.Info.unpack(_ask(dev, pc.MSG_RESET, 2).payload)
    assert a.session != b.session and dev.valid == 0
    err = _ask(dev, pc.MSG_RUN, 3, m.Run(pc.MODE_CHAIN, 0).pack())
    assert m.Error.unpack(err.payload).code == pc.Status.REQ_INPUT_MISSING


def test_a_device_without_the_all_exits_model_says_so(setup):
    from dataclasses import replace

    art = setup[0]
    files = {k: v for k, v in art.manifest["files"].items() if k != "all_exits_tflite"}
    bare = replace(art, manifest={**art.manifest, "files": files})
    dev = DeviceCore(bare, make_backend(bare), AgentConfig(port="-", artifact=str(art.dir)))
    assert not m.Info.unpack(_ask(dev, pc.MSG_HELLO, 0).payload).capabilities & pc.CAP_FULL_ALL_EXITS
    _ask(dev, pc.MSG_LOAD_INPUT, 1, m.LoadInput(0, bytes(64)).pack())
    err = _ask(dev, pc.MSG_RUN, 2, m.Run(pc.MODE_FULL, pc.FULL_ALL_EXITS).pack())
    assert m.Error.unpack(err.payload).code == pc.Status.REQ_UNSUPPORTED


@pytest.mark.parametrize("run, code", [
    (m.Run(pc.MODE_FULL, 2), pc.Status.REQ_BAD_SEGMENT),
    (m.Run(pc.MODE_SEGMENT, 3), pc.Status.REQ_BAD_SEGMENT),
    (m.Run(pc.MODE_EARLY_EXIT, 0, 2, (0.0,)), pc.Status.REQ_BAD_PARAMS),   # patience 0
    (m.Run(pc.MODE_EARLY_EXIT, 0, 0, ()), pc.Status.REQ_BAD_PARAMS),
    (m.Run(pc.MODE_CHAIN, 0, slot=300), pc.Status.REQ_BAD_SLOT),
])
def test_out_of_range_requests_get_an_error_and_the_device_still_answers(setup, run, code):
    dev = _device(setup, input_capacity=64 * 256)
    _ask(dev, pc.MSG_LOAD_INPUT, 1, m.LoadInput(0, bytes(64)).pack())
    err = _ask(dev, pc.MSG_RUN, 2, run.pack())
    assert err.type == pc.MSG_ERROR and m.Error.unpack(err.payload).code == code
    assert _ask(dev, pc.MSG_RUN, 3, m.Run(pc.MODE_CHAIN, 0).pack()).type == pc.MSG_RESULT


def test_load_refuses_gaps_and_overflow(setup):
    dev = _device(setup, input_capacity=64)
    assert dev.capacity == 512  # never below the largest segment input (8x8x8 features)
    assert m.Ack.unpack(_ask(dev, pc.MSG_LOAD_INPUT, 1, m.LoadInput(0, bytes(64)).pack()).payload).valid_bytes == 64
    for seq, req in enumerate([m.LoadInput(65, b"\x01"), m.LoadInput(64, bytes(449))], start=2):
        err = _ask(dev, pc.MSG_LOAD_INPUT, seq, req.pack())
        assert m.Error.unpack(err.payload).code == pc.Status.REQ_INPUT_RANGE
    assert dev.valid == 64


def test_undecodable_frames_are_nacked(setup):
    dev = _device(setup)
    (nack,) = FrameDecoder().feed(dev.handle(ProtocolError(pc.Status.FRAME_CRC)))
    assert nack.seq == pc.SEQ_UNSOLICITED and m.Error.unpack(nack.payload).code == pc.Status.FRAME_CRC


def test_device_side_imports_no_torch_or_tensorflow():
    code = ("import sys; import tinyexit.firmware_bridge.agent.server, tinyexit.firmware_bridge.harness.bench, "
            "tinyexit.firmware_bridge.harness.cli, tinyexit.firmware_bridge.harness.power, tinyexit.firmware_bridge.harness.faults; "
            "bad = [m for m in ('torch', 'tensorflow', 'sklearn') if m in sys.modules]; print(bad); "
            "sys.exit(1 if bad else 0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
