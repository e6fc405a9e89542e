"""Devices that reset mid-run: the harness notices (boot INFO, or a device that lost the inputs it acknowledged
and answers HELLO with a new session), reconnects, reloads, re-sends what was in flight and finishes with every
sample exactly once; a device the harness started and that died is started again."""
import threading
import time

import pytest

from tinyexit.firmware_bridge.harness.bench import BenchConfig, run_benchmark
from tinyexit.firmware_bridge.harness.fault_socket import SocketRelay
from tinyexit.firmware_bridge.harness.faults import PtyBridge
from tinyexit.firmware_bridge.reliability.fault_runs import DeviceKiller, FaultRunConfig, run_fault_benchmark
from tinyexit.firmware_bridge.harness.results import read_results, record_key
from tinyexit.firmware_bridge.harness.session import SessionConfig

SAMPLES = 80


def _faulty_run_with_kills(run, target: str, kills: int) -> dict:
    cfg = FaultRunConfig(target=target, limit=SAMPLES, resets=kills, reply_timeout_s=0.1, progress=False)
    report = run_fault_benchmark(run, cfg, log=lambda msg: None)
    assert report["ok"], report
    assert report["devices_killed"] == kills and report["link"]["restarts"] == kills
    assert report["link"]["resets"] >= kills and report["lines"] == report["unique_keys"] == SAMPLES
    return report


@pytest.mark.slow
def test_a_spawned_agent_killed_twice_on_a_noisy_link_is_restarted_and_nothing_is_lost(rel_run):
    report = _faulty_run_with_kills(rel_run, "agent", 2)
    log = (rel_run / "bench" / report["bench"]["faults"] / "agent-0.log").read_text()
    assert log.count("restarting the host agent") == 2


@pytest.mark.slow
def test_a_qemu_that_dies_on_a_noisy_link_is_restarted_and_gives_the_clean_ticks(rel_run, need_qemu):
    report = _faulty_run_with_kills(rel_run, "qemu", 1)
    assert report["mismatches"]["ticks"] == 0 and report["ticks_compared"] and report["max_tick_difference"] == 0


@pytest.mark.parametrize("target", ["agent", "qemu"])
def test_a_device_the_harness_started_is_started_again_on_a_clean_link(rel_run, target, request):
    if target == "qemu":
        request.getfixturevalue("need_qemu")
    out = rel_run / "bench" / "plain" / "results.jsonl"
    killer = DeviceKiller(target, out, 60 * 2, 1, log=lambda msg: None)
    try:
        summary = run_benchmark(rel_run, [target], BenchConfig(modes=("early_exit", "segments"), warmup=0, limit=60,
                                                               name="plain", progress=False), log=lambda msg: None)
    finally:
        killer.stop()
    records, _ = read_results(out)
    assert killer.kills == 1 and summary["link"]["restarts"] == summary["link"]["resets"] == 1
    assert len(records) == 60 * 4 == len({record_key(r) for r in records})
    assert all(r["exit"] == r["host_exit"] and r["host_logits_equal"] for r in records)


def _when_results(path, n: int, action) -> threading.Thread:
    def watch():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if path.is_file() and path.read_bytes().count(b"\n") >= n:
                action()
                return
            time.sleep(0.005)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    return t


def _bench(run, url: str, messages: list) -> tuple[dict, list]:
    cfg = BenchConfig(modes=("early_exit", "full"), warmup=0, limit=60, progress=False, name="reset",
                      session=SessionConfig(reply_timeout_s=0.2, max_retries=40))
    summary = run_benchmark(run, [url], cfg, log=messages.append)
    records, torn = read_results(run / "bench" / "reset" / "results.jsonl")
    assert torn is None and len(records) == 60 * 3 == len({record_key(r) for r in records})
    assert all(r["exit"] == r["host_exit"] and r["host_logits_equal"] for r in records)
    return summary, records


def test_an_agent_restarted_behind_the_link_is_noticed_by_its_boot_info(rel_run, spawn_agent):
    bridge = PtyBridge()
    art = rel_run / "export" / "classifier"
    first = spawn_agent(bridge.device_path, art)

    def reset():
        first.kill()
        first.wait()
        spawn_agent(bridge.device_path, art)

    messages = []
    try:
        _when_results(rel_run / "bench" / "reset" / "results.jsonl", 40, reset)
        summary, _ = _bench(rel_run, bridge.host_path, messages)
    finally:
        bridge.close()
    assert summary["link"]["resets"] == 1 and summary["link"]["restarts"] == 0
    assert any("restarted (session" in m for m in messages), messages


def test_a_reset_whose_boot_info_is_lost_is_noticed_by_the_new_session(rel_run, spawn_agent):
    bridge = PtyBridge()
    art = rel_run / "export" / "classifier"
    first = spawn_agent(bridge.device_path, art)

    def silent_reset():
        bridge.set_dead()              # the boot INFO of the new agent is swallowed
        first.kill()
        first.wait()
        spawn_agent(bridge.device_path, art)
        time.sleep(2.0)                # booted and announced itself into the void
        bridge.set_dead(False)

    messages = []
    try:
        _when_results(rel_run / "bench" / "reset" / "results.jsonl", 40, silent_reset)
        summary, _ = _bench(rel_run, bridge.host_path, messages)
    finally:
        bridge.close()
    assert summary["link"]["resets"] == 1 and summary["link"]["timeouts"] > 0
    assert any("lost the inputs it acknowledged (REQ_INPUT_MISSING" in m for m in messages), messages


@pytest.mark.slow
def test_qemu_reset_behind_the_relay_with_its_boot_info_lost_is_noticed(rel_run, qemu_device):
    _, handle = qemu_device()
    relay = SocketRelay(handle.port)

    def silent_reset():
        relay.set_dead()
        handle.proc.kill()
        handle.proc.wait()
        _, again = qemu_device()       # same firmware, same session id: only the lost inputs tell
        relay.retarget(again.port)
        time.sleep(1.0)
        relay.set_dead(False)

    messages = []
    try:
        _when_results(rel_run / "bench" / "reset" / "results.jsonl", 70, silent_reset)
        summary, _ = _bench(rel_run, relay.url, messages)
    finally:
        relay.close()
    # A loaded machine may add a reconnect after a reply timeout; the one reset is what must be seen.
    assert summary["link"]["resets"] == 1 and relay.connections >= 2
    assert any("lost the inputs it acknowledged" in m for m in messages), messages
