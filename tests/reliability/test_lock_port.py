"""Two harnesses on one port: the second refuses with a clear message and the first is not disturbed; the lock
dies with its holder (even on SIGKILL); two agents on one port likewise."""
import os
import signal
import socket
import subprocess
import sys
import time

from tinyexit.cli import main
from tinyexit.firmware_bridge.harness.faults import FaultConfig, PtyBridge
from tinyexit.firmware_bridge.harness.link import SerialLink, lock_path
from tinyexit.firmware_bridge.harness.results import read_results, record_key
from tinyexit.firmware_bridge.harness.session import DeviceSession


def _bench(run, port: str, name: str, limit: int) -> list[str]:
    return [sys.executable, "-m", "tinyexit", "bench", str(run), "--target", port, "--modes", "early_exit",
            "--limit", str(limit), "--warmup", "0", "--name", name]


def _wait_lines(path, n: int, proc, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if path.is_file() and path.read_bytes().count(b"\n") >= n:
            return
        time.sleep(0.01)
    raise AssertionError(f"{path}: fewer than {n} lines (harness exit {proc.poll()})")


def test_a_second_harness_on_a_busy_port_refuses_and_the_first_finishes(rel_run, spawn_agent):
    # every chunk to the device waits 10 ms: the first run lasts long enough to be interrupted by the second
    bridge = PtyBridge(to_device=FaultConfig(delay=1.0, delay_s=0.01))
    port = bridge.host_path
    try:
        spawn_agent(bridge.device_path, rel_run / "export" / "classifier")
        first = subprocess.Popen(_bench(rel_run, port, "first", 120), stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, text=True)
        _wait_lines(rel_run / "bench" / "first" / "results.jsonl", 5, first)
        second = subprocess.run(_bench(rel_run, port, "second", 5), capture_output=True, text=True, timeout=60)
        assert second.returncode == 2 and "Traceback" not in second.stderr
        assert second.stderr.strip().splitlines()[-1] == (
            f"tinyexit: error: port {port} is in use by another tinyexit process (pid {first.pid}, lock "
            f"{lock_path(port)}); wait for it to finish or stop it, then retry")
        assert first.wait(timeout=90) == 0, first.stderr.read()[-1500:]
        records, torn = read_results(rel_run / "bench" / "first" / "results.jsonl")
        assert torn is None and len(records) == 120 == len({record_key(r) for r in records})
        assert all(r["exit"] == r["host_exit"] for r in records)
        assert read_results(rel_run / "bench" / "second" / "results.jsonl")[0] == []

        # A holder killed with SIGKILL cannot clean up; the kernel drops its lock with it.
        third = subprocess.Popen(_bench(rel_run, port, "third", 120), stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        _wait_lines(rel_run / "bench" / "third" / "results.jsonl", 5, third)
        os.kill(third.pid, signal.SIGKILL)
        third.wait()
        fourth = subprocess.run(_bench(rel_run, port, "fourth", 10), capture_output=True, text=True, timeout=60)
        assert fourth.returncode == 0, fourth.stderr[-1500:]
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
