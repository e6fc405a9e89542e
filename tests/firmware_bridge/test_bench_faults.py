"""`tinyexit bench` and `tinyexit agent` when things go wrong: clear one-line errors, nothing written lost."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tinyexit.cli import main
from tinyexit.errors import UserError
from tinyexit.firmware_bridge.harness.bench import BenchConfig, run_benchmark
from tinyexit.firmware_bridge.harness.faults import FaultConfig, PtyBridge
from tinyexit.firmware_bridge.harness.link import PtyPair, SerialLink
from tinyexit.firmware_bridge.harness.results import read_results, record_key
from tinyexit.firmware_bridge.harness.session import SessionConfig

QUIET = dict(progress=False, warmup=0)


def _cli(capsys, *argv):
    code = main(list(argv))
    err = capsys.readouterr().err
    return code, err.strip().splitlines()[-1] if err.strip() else ""


def test_wrong_artifact_hash_is_refused(fixture_run, spawn_agent, tmp_path):
    import shutil

    other = tmp_path / "other"
    shutil.copytree(fixture_run / "export" / "classifier", other)
    man = json.loads((other / "manifest.json").read_text())
    man["artifact_hash"] = "ab" * 32
    (other / "manifest.json").write_text(json.dumps(man))
    bridge = PtyBridge()
    try:
        spawn_agent(bridge.device_path, other)
        with pytest.raises(UserError, match=rf"device at {bridge.host_path} runs artifact abababab.*refusing to "
                                            "benchmark a model this host did not export"):
            run_benchmark(fixture_run, [bridge.host_path], BenchConfig(limit=4, **QUIET), log=lambda m: None)
        assert read_results(fixture_run / "bench" / bridge.host_path.split("/")[-1] / "results.jsonl")[0] == []
    finally:
        bridge.close()


def test_noisy_link_benchmark_is_exact_and_counts_retries(fixture_run, spawn_agent):
    noise = FaultConfig(corrupt=0.002, drop=0.001, duplicate=0.001, split=0.2, seed=11)
    bridge = PtyBridge(to_device=noise, to_host=FaultConfig(corrupt=0.002, drop=0.001, seed=12))
    try:
        spawn_agent(bridge.device_path, fixture_run / "export" / "classifier")
        cfg = BenchConfig(limit=40, modes=("early_exit", "full"), name="noisy", **QUIET,
                          session=SessionConfig(reply_timeout_s=0.3, max_retries=30))
        summary = run_benchmark(fixture_run, [bridge.host_path], cfg, log=lambda m: None)
    finally:
        bridge.close()
    records, _ = read_results(fixture_run / "bench" / "noisy" / "results.jsonl")
    assert len(records) == 120 and len({record_key(r) for r in records}) == 120  # early_exit, full, full:all_exits
    assert all(r["host_logits_equal"] and r["exit"] == r["host_exit"] for r in records)
    assert summary["link"]["retries"] > 0 and summary["simulated_or_real"] == f"device at {bridge.host_path}"


def test_port_in_use_missing_port_and_silent_device(fixture_run, capsys):
    pair = PtyPair()
    holder = SerialLink(pair.slave_path)
    try:
        code, msg = _cli(capsys, "bench", str(fixture_run), "--target", pair.slave_path, "--limit", "2")
        assert code == 2 and f"port {pair.slave_path} is in use by another tinyexit process (pid {os.getpid()}" in msg
    finally:
        holder.close()
    code, msg = _cli(capsys, "bench", str(fixture_run), "--target", pair.slave_path, "--limit", "2",
                     "--timeout", "0.2", "--retries", "1", "--name", "silent")
    assert code == 2 and msg.startswith(f"tinyexit: error: no answer from the device at {pair.slave_path} to HELLO")
    pair.close()
    code, msg = _cli(capsys, "bench", str(fixture_run), "--target", "/dev/ttyTINYEXIT9", "--limit", "2")
    assert code == 2 and "cannot open port /dev/ttyTINYEXIT9" in msg


def test_qemu_target_without_its_module(fixture_run, capsys):
    try:
        import tinyexit.firmware_bridge.harness.qemu  # noqa: F401
        pytest.skip("the QEMU target module exists in this checkout")
    except ModuleNotFoundError:
        pass
    code, msg = _cli(capsys, "bench", str(fixture_run), "--target", "qemu", "--limit", "2")
    assert code == 2 and "QEMU target not available" in msg


def test_agent_cli_refuses_a_missing_or_damaged_artifact(fixture_run, tmp_path, capsys):
    pair = PtyPair()
    try:
        code, msg = _cli(capsys, "agent", "--port", pair.slave_path, "--artifact", str(tmp_path))
        assert code == 2 and msg == (f"tinyexit: error: {tmp_path}/manifest.json: missing; point at RUN/export/<model> "
                                     "written by 'tinyexit export' (or 'tinyexit import')")
        art = fixture_run / "export" / "classifier"
        with open(art / "classifier.int8.tflite", "r+b") as f:
            f.seek(4000)
            f.write(b"\xff")
        code, msg = _cli(capsys, "agent", "--port", pair.slave_path, "--artifact", str(art))
        assert code == 2 and "classifier.int8.tflite: sha256 differs from" in msg
    finally:
        pair.close()


@pytest.mark.slow
def test_harness_killed_mid_run_resumes_without_losing_or_repeating(fixture_run):
    out = fixture_run / "bench" / "host-agent" / "results.jsonl"
    cmd = [sys.executable, "-m", "tinyexit", "bench", str(fixture_run), "--target", "agent", "--limit", "150",
           "--repeats", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not out.is_file() or out.read_bytes().count(b"\n") < 300):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before, _ = read_results(out)
    assert 300 <= len(before) < 150 * 6 * 2
    log = out.parent / "agent-0.log"
    deadline = time.monotonic() + 10
    while b"link closed" not in log.read_bytes() and time.monotonic() < deadline:
        time.sleep(0.1)  # the orphaned agent sees its pty close and exits
    assert b"link closed" in log.read_bytes()
    cfg = BenchConfig(limit=150, repeats=2, resume=True, **QUIET)
    summary = run_benchmark(fixture_run, ["agent"], cfg, log=lambda m: None)
    after, torn = read_results(out)
    assert torn is None and len(after) == 150 * 6 * 2 == len({record_key(r) for r in after})
    assert after[:len(before)] == before and summary["agreement_exit"] == 1.0


def test_devices_file_expands_to_targets(tmp_path):
    from tinyexit.firmware_bridge.harness.cli import expand_targets

    f = tmp_path / "devices.txt"
    f.write_text("# the farm\n/dev/ttyACM0\n\nrfc2217://lab:2217   # bench 2\n")
    assert expand_targets(["agent", f"@{f}"]) == ["agent", "/dev/ttyACM0", "rfc2217://lab:2217"]
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(UserError, match="no targets in the devices file"):
        expand_targets([f"@{tmp_path / 'empty.txt'}"])
    with pytest.raises(UserError, match="cannot read the devices file"):
        expand_targets([f"@{tmp_path / 'missing.txt'}"])


def test_fec_on_a_noisy_line_gives_the_clean_results(fixture_run, spawn_agent):
    """1 % corrupted + 0.5 % dropped bytes each way, --fec on: every request and reply Reed-Solomon coded,
    every result identical to the host reference (what a clean run gives), the repairs counted."""
    line = dict(corrupt=0.01, drop=0.005)
    bridge = PtyBridge(to_device=FaultConfig(**line, seed=21), to_host=FaultConfig(**line, seed=22))
    try:
        spawn_agent(bridge.device_path, fixture_run / "export" / "classifier")
        cfg = BenchConfig(limit=40, modes=("early_exit",), name="fec-on", **QUIET, session=SessionConfig(fec="on"))
        summary = run_benchmark(fixture_run, [bridge.host_path], cfg, log=lambda m: None)
        injected = sum(bridge.to_device.counts[k] + bridge.to_host.counts[k] for k in ("corrupted", "dropped"))
    finally:
        bridge.close()
    records, _ = read_results(fixture_run / "bench" / "fec-on" / "results.jsonl")
    assert len(records) == 40 and len({record_key(r) for r in records}) == 40
    assert all(r["host_logits_equal"] and r["exit"] == r["host_exit"] for r in records)
    fec = summary["link"]["fec"]
    assert fec["mode"] == "on" and fec["device_supports"] and fec["active"] and fec["switched_after_tries"] == 0
    # plain: at most every 4th HELLO before an INFO got through (the others go FEC-encoded on speculation)
    assert injected > 0 and 0 <= summary["link"]["frames_sent"] - fec["frames_sent"] <= 4
    assert fec["frames_received"] >= 40 and fec["repaired_frames"] > 0
    assert fec["corrected_bytes"] + fec["recovered_drops"] > 0
