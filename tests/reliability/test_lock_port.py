"""Two harnesses on one port: the second refuses with a clear message and the first is not disturbed; the lock
dies with its holder (even on SIGKILL); two agents on one port likewise."""
import os
import signal
import socket
import subprocess
import sys
import time

from tinyexit.cli import main
from tinyexit.firmware_bridge.harness.faults import FaultConfig, FaultInjector, PtyBridge
from tinyexit.firmware_bridge.harness.link import SerialLink, lock_path
from tinyexit.firmware_bridge.harness.results import read_results, record_key
from tinyexit.firmware_bridge.harness.session import DeviceSession


def _bench(run, port: str, name: str, limit: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "tinyexit", "bench", str(run), "--target", port, "--modes", "early_exit",
            "--limit", str(limit), "--warmup", "0", "--name", name, *extra]


def _lines(path) -> int:
    return path.read_bytes().count(b"\n") if path.is_file() else 0


# 1 HELLO + 8 LOAD frames + 120 RUN frames reach the device in a 120-sample run: holding the link after
# 40 frames stops each holder certainly mid-run, whatever the machine's load.
HOLD_AFTER_FRAMES = 40


def _ready(bridge: PtyBridge) -> None:
    """Wait until the agent answers, so a harness started next gets no boot delay."""
    host = SerialLink(bridge.host_path)
    try:
        DeviceSession(host).handshake(60)
    finally:
        host.close()


def _wait_held(bridge: PtyBridge, proc: subprocess.Popen, log) -> None:
    """Until the relay holds the link: the harness is then blocked mid-run with its port locked."""
    deadline = time.monotonic() + 300  # a bound for a hung harness, not a guess at its speed
    while not bridge.wait_held(0.1):
        assert time.monotonic() < deadline, f"harness sent fewer than {HOLD_AFTER_FRAMES} frames in 300 s"
        if proc.poll() is not None:
            raise AssertionError(f"harness exited ({proc.returncode}) before {HOLD_AFTER_FRAMES} frames: "
                                 f"{log.read_text()[-1500:]}")


def test_a_second_harness_on_a_busy_port_refuses_and_the_first_finishes(rel_run, spawn_agent, tmp_path):
    # The relay passes 40 requests to the device and then holds the link until we release it: the
    # first harness holds its port lock and is provably mid-run while the second one starts.
    bridge = PtyBridge()
    port = bridge.host_path
    try:
        spawn_agent(bridge.device_path, rel_run / "export" / "classifier")
        _ready(bridge)
        bridge.hold(HOLD_AFTER_FRAMES)
        # a reply held back by the test is not a lost frame: the first harness waits, it does not retry
        first_log = tmp_path / "first.log"
        with open(first_log, "wb") as log:
            first = subprocess.Popen(_bench(rel_run, port, "first", 120, "--timeout", "600"),
                                     stdout=subprocess.DEVNULL, stderr=log)
        _wait_held(bridge, first, first_log)
        first_results = rel_run / "bench" / "first" / "results.jsonl"
        assert 0 < _lines(first_results) < 120 and first.poll() is None  # mid-run, lock held
        second = subprocess.run(_bench(rel_run, port, "second", 5), capture_output=True, text=True, timeout=300)
        assert first.poll() is None  # still held: the second one met a busy port, certainly
        bridge.release()
        assert second.returncode == 2 and "Traceback" not in second.stderr
        assert second.stderr.strip().splitlines()[-1] == (
            f"tinyexit: error: port {port} is in use by another tinyexit process (pid {first.pid}, lock "
            f"{lock_path(port)}); wait for it to finish or stop it, then retry")
        assert first.wait(timeout=300) == 0, first_log.read_text()[-1500:]
        records, torn = read_results(first_results)
        assert torn is None and len(records) == 120 == len({record_key(r) for r in records})
        assert all(r["exit"] == r["host_exit"] for r in records)
        assert read_results(rel_run / "bench" / "second" / "results.jsonl")[0] == []

        # A holder killed with SIGKILL (held mid-run, lock taken) cannot clean up; the kernel drops its lock.
        bridge.hold(HOLD_AFTER_FRAMES)
        third_log = tmp_path / "third.log"
        with open(third_log, "wb") as log:
            third = subprocess.Popen(_bench(rel_run, port, "third", 120, "--timeout", "600"),
                                     stdout=subprocess.DEVNULL, stderr=log)
        _wait_held(bridge, third, third_log)
        os.kill(third.pid, signal.SIGKILL)
        third.wait()
        bridge.release()
        fourth = subprocess.run(_bench(rel_run, port, "fourth", 10), capture_output=True, text=True, timeout=300)
        assert fourth.returncode == 0, fourth.stderr[-1500:]
        assert len(read_results(rel_run / "bench" / "fourth" / "results.jsonl")[0]) == 10
    finally:
        bridge.close()


def test_a_socket_url_is_locked_too(rel_run, capsys):
    server = socket.create_server(("127.0.0.1", 0))
    url = f"socket://127.0.0.1:{server.getsockname()[1]}"
    holder = SerialLink(url)
    try:
        code = main(["bench", str(rel_run), "--target", url, "--limit", "2"])
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert code == 2 and err.startswith(f"tinyexit: error: port {url} is in use by another tinyexit process "
                                            f"(pid {os.getpid()}, lock ")
    finally:
        holder.close()
        server.close()


def test_a_second_agent_on_the_same_port_refuses(rel_run, spawn_agent):
    bridge = PtyBridge()
    try:
        art = rel_run / "export" / "classifier"
        first = spawn_agent(bridge.device_path, art)
        host = SerialLink(bridge.host_path)
        try:
            DeviceSession(host).handshake(20)  # it answers: it holds its port
        finally:
            host.close()
        second = subprocess.run([sys.executable, "-m", "tinyexit", "agent", "--port", bridge.device_path,
                                 "--artifact", str(art)], capture_output=True, text=True, timeout=60)
        assert second.returncode == 2 and first.poll() is None
        assert second.stderr.strip().splitlines()[-1].startswith(
            f"tinyexit: error: port {bridge.device_path} is in use by another tinyexit process (pid {first.pid}")
    finally:
        bridge.close()


def test_a_hold_cuts_the_stream_right_after_the_named_frame():
    inj = FaultInjector(FaultConfig())
    assert inj.cut(b"\x00ab\x00") == (b"\x00ab\x00", b"")  # no hold armed: everything passes
    inj.hold(2)
    assert inj.cut(b"\x00ab\x00\x00c") == (b"\x00ab\x00\x00c", b"") and not inj.held.is_set()  # lone 0: no frame
    assert inj.cut(b"d\x00\x00ef\x00") == (b"d\x00", b"\x00ef\x00") and inj.held.is_set()
    assert inj.cut(b"\x00gh\x00") == (b"", b"\x00gh\x00")  # held: nothing passes until release
    inj.release()
    assert inj.cut(b"\x00ij\x00") == (b"\x00ij\x00", b"")
    inj.hold(0)
    assert inj.held.is_set() and inj.cut(b"k") == (b"", b"k")
