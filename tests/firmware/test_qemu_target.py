"""QEMU tier: the firmware on qemu-system-arm -M mps2-an386 over the protocol (loopback TCP).

The same segments as the host tier, bit-exact to TFLite Micro through the serial protocol; instruction
counts identical on two runs and after idle pauses of any length; clean stop; watchdog and fault exit statuses.
"""
import json
import shutil
import socket
import time
from pathlib import Path

import numpy as np
import pytest

from tinyexit.firmware_bridge.protocol import messages as m
from tinyexit.firmware_bridge.protocol import constants as pc
from tinyexit.firmware_bridge.firmware.build import FirmwareConfig, build_firmware
from tinyexit.firmware_bridge.protocol.framing import Frame, FrameDecoder, encode_frame
from tinyexit.firmware_bridge.harness.link import SerialLink
from tinyexit.firmware_bridge.harness.qemu import INSTRUCTIONS_PER_TICK, start_qemu, start_qemu_target
from tinyexit.firmware_bridge.harness.session import DeviceSession

from helpers import tflite_models as TM

pytestmark = [pytest.mark.qemu, pytest.mark.skipif(
    shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None,
    reason="needs qemu-system-arm and gcc-arm-none-eabi")]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return TM.fake_run(tmp_path_factory.mktemp("qemu"), TM.chain_models(), n_inputs=64)


class _Cfg:
    kernels = "arm_dsp"


def _session(url):
    link = SerialLink(url, 115200)
    return link, DeviceSession(link)


def _segment_inputs(run):
    x0 = np.load(run / "export" / "tm" / "inputs.npz")["x"]
    blobs, cur, want = TM.chain_models(), [x[None] for x in x0], []
    for k, blob in enumerate(blobs):
        outs = TM.tflm_run(blob, cur)
        want.append((np.stack(cur), np.stack([next(o for o in os_ if o.ndim == 2).ravel() for os_ in outs])))
        cur = [max(os_, key=lambda o: o.ndim) for os_ in outs] if k < 2 else None
    return want


@pytest.mark.parametrize("kernels", ["arm_dsp", "reference"])
def test_every_segment_over_the_protocol_bit_exact_to_tflite_micro(run, kernels):
    want = _segment_inputs(run)
    cfg = _Cfg()
    cfg.kernels = kernels
    t0 = time.monotonic()
    url, handle = start_qemu_target(run, "tm", cfg)
    try:
        link, s = _session(url)
        info = s.handshake(10)
        assert info.runtime_name == f"tinyexit-c {kernels}" and info.device == "qemu-mps2-an386"
        assert info.tick_hz == 25_000_000
        for k, (inputs, logits) in enumerate(want):
            per = inputs[0].nbytes
            batch = info.input_capacity // per
            for start in range(0, len(inputs), batch):
                chunk = inputs[start:start + batch]
                assert s.load(0, chunk.tobytes(), 1020) == chunk.nbytes
                for slot in range(len(chunk)):
                    res = s.run(m.Run(pc.MODE_SEGMENT, k, 0, (), 1, slot))
                    assert res.exit == k and len(res.ticks) == 1
                    np.testing.assert_array_equal(res.logits, logits[start + slot])
        link.close()
    finally:
        status = handle.close()
    assert status == 0  # the EXIT request ended the firmware, not a signal
    assert time.monotonic() - t0 < 120
    prof = handle.profile  # per-layer instructions, measured with the selftest firmware at start
    assert prof["kernels"] == kernels and len(prof["per_layer"]) == 21 and prof["unit"] == "instructions"
    assert sum(r["macs"] for r in prof["per_layer"]) == prof["macs"] == sum(s_["macs"] for s_ in prof["segments"])
    assert abs(sum(r["instructions"] for r in prof["per_layer"]) - prof["instructions"]) < 0.02 * prof["instructions"]
    assert (1.0 if kernels == "arm_dsp" else 4.0) < prof["instructions_per_mac"] < (2.5 if kernels == "arm_dsp" else 12)


def test_instruction_counts_are_identical_on_two_runs(run):
    elf = Path(build_firmware(run, "tm", FirmwareConfig(verify=False), log=lambda m_: None)["elf"])
    x = np.load(run / "export" / "tm" / "inputs.npz")["x"][:8]
    counts, repeats = [], []
    for attempt in range(2):
        url, handle = start_qemu(elf, elf.parent / f"det{attempt}.log")
        try:
            link, s = _session(url)
            s.handshake(10)
            s.load(0, x.tobytes(), 1020)
            counts.append([s.run(m.Run(pc.MODE_CHAIN, 2, 0, (), 1, slot)).ticks for slot in range(len(x))])
            # The same request after idle pauses of different lengths: while the core sleeps, virtual time follows
            # the wall clock, so each RUN starts at another phase of the 40-instruction tick.  The firmware restarts
            # the timer's phase at each measured interval (port_ticks_restart), so the counts must not move.
            for pause_ms in (0, 0.3, 1.1, 2.7, 0.05, 1.9, 0.7, 3.3):
                time.sleep(pause_ms / 1e3)
                repeats.append(s.run(m.Run(pc.MODE_CHAIN, 2, 0, (), 1, 3)).ticks)
            # A byte that arrives while the RUN computes (a host retransmitting on a noisy line): the UART
            # takes it at once, and its interrupt must not run inside the measured interval.
            write = link.write
            link.write = lambda data: write(bytes(data) + b"\x00\x00")
            repeats.append(s.run(m.Run(pc.MODE_CHAIN, 2, 0, (), 1, 3)).ticks)
            link.write = write
            link.close()
        finally:
            handle.close()
    a, b = np.array(counts[0]), np.array(counts[1])
    assert (a == b).all()  # exact: every interval starts at tick phase zero
    assert all(r == repeats[0] for r in repeats), repeats
    assert (a > 0).all()
    per_inference = a.sum(axis=1) * INSTRUCTIONS_PER_TICK
    assert np.ptp(per_inference) / per_inference.mean() < 0.01  # data-independent kernels


def test_watchdog_and_faults_end_qemu_with_their_status(run):
    """A hang (watchdog NMI) and a bus fault stop QEMU with statuses 4 and 3 after an ERROR frame."""
    rep = build_firmware(run, "tm", FirmwareConfig(app="firmware", verify=False, extra_cflags="-DTE_TEST_FAULTS"),
                         log=lambda m_: None)
    elf = Path(rep["elf"])
    for slot, status, words in ((0xFFFE, 4, "watchdog"), (0xFFFD, 3, "hard fault")):
        url, handle = start_qemu(elf, elf.parent / f"fault{status}.log")
        port = int(url.rsplit(":", 1)[1])
        data = b""
        try:
            # a plain socket: pyserial drops the bytes of a read that ends at the peer's close
            with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
                sock.sendall(encode_frame(Frame(pc.MSG_RUN, 7, m.Run(pc.MODE_CHAIN, 0, 0, (), 65535, slot).pack()),
                                          lead=True))
                while chunk := sock.recv(4096):
                    data += chunk
        finally:
            code = handle.close()
        assert code == status
        events = [e for e in FrameDecoder().feed(data) if isinstance(e, Frame)]
        assert events[0].type == pc.MSG_INFO  # the boot announcement
        error = m.Error.unpack(events[-1].payload)
        assert events[-1].seq == pc.SEQ_UNSOLICITED and error.code == pc.Status.DEV_INTERNAL and words in error.text


def test_mlperf_tiny_dut_mode_speaks_the_mlcommons_commands(run):
    rep = build_firmware(run, "tm", FirmwareConfig(app="mlperf", verify=False), log=lambda m_: None)
    url, handle = start_qemu(Path(rep["elf"]), Path(rep["elf"]).parent / "mlperf.log")
    x = np.load(run / "export" / "tm" / "inputs.npz")["x"][3]
    buf = b""
    try:
        with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=30) as sock:
            def command(text: str) -> list[str]:
                nonlocal buf
                sock.sendall(text.encode() + b"%")
                while b"m-ready\r\n" not in buf:
                    buf += sock.recv(4096)
                reply, _, buf = buf.partition(b"m-ready\r\n")
                return reply.decode().splitlines()

            while b"m-ready\r\n" not in buf:
                buf += sock.recv(4096)
            assert buf.startswith(b"m-init-done\r\n")
            buf = buf.partition(b"m-ready\r\n")[2]
            assert command("name") == ["m-name-dut-[tinyexit]"]
            assert command("profile")[1].startswith("m-model-[tm ")
            assert command("db load 64") == ["m-[Expecting 64 bytes]"]
            assert command("db " + x.tobytes()[:20].hex()) == []
            assert command("db " + x.tobytes()[20:].hex()) == ["m-load-done"]
            lines = command("infer 4 1")
            assert lines[:3] == ["m-warmup-start-1", "m-warmup-done", "m-infer-start-4"]
            t0, t1 = (int(line.removeprefix("m-lap-us-")) for line in lines[3:5])
            assert lines[5] == "m-infer-done" and command("results") == [lines[6]]
            assert command("bogus 1") == ["e-[Unknown command: bogus]"]
            assert command("db zz") == ["e-[Invalid hex digit]"]
    finally:
        assert handle.close() in (0, -15)  # EXIT is not part of this protocol: QEMU gets SIGTERM
    probs = np.array([float(v) for v in lines[6].removeprefix("m-results-[").removesuffix("]").split(",")])
    logits = _tflm_chain_logits(x)
    scale = json.loads((run / "export" / "tm" / "c" / "codegen.json").read_text())["segments"][2]["logits_scale"]
    want = np.exp((logits - logits.max()) * scale)
    np.testing.assert_allclose(probs, want / want.sum(), atol=6e-4)
    # lap timestamps are microseconds of QEMU's virtual clock: 1000 instructions each under -icount shift=0
    assert 4 * 200 < t1 - t0 < 4 * 5000


def _tflm_chain_logits(x):
    cur = [x[None]]
    for k, blob in enumerate(TM.chain_models()):
        outs = TM.tflm_run(blob, cur)[0]
        cur = [max(outs, key=lambda o: o.ndim)]
    return next(o for o in outs if o.ndim == 2).ravel().astype(np.float64)
