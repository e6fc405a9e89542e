"""Benchmarks on a damaged link (1 % of bytes corrupted, 0.5 % dropped, both directions) on the host agent and
on QEMU: results identical to a clean run, every sample exactly once, retries counted up to report.json; and a
link that dies mid-run: a bounded wait, a clear message, results kept, --resume finishes."""
import json
import re
import threading
import time
from collections import Counter

import pytest

from tinyexit.cli import main
from tinyexit.errors import UserError
from tinyexit.firmware_bridge.harness.bench import BenchConfig, run_benchmark
from tinyexit.firmware_bridge.harness.fault_socket import SocketRelay
from tinyexit.firmware_bridge.harness.faults import PtyBridge
from tinyexit.firmware_bridge.reliability.fault_runs import FaultRunConfig, run_fault_benchmark
from tinyexit.firmware_bridge.harness.results import read_results, record_key
from tinyexit.firmware_bridge.harness.session import SessionConfig

QUIET = lambda msg: None  # noqa: E731
SAMPLES = 80
LINK_KEYS = ("frames", "retries", "crc_errors", "resyncs", "timeouts")


def _check_fault_run(run, target: str, corrupt: float = 0.01, drop: float = 0.005) -> dict:
    """The session's defaults only (no tuned timeouts or retries): the adaptive link must cope by itself."""
    cfg = FaultRunConfig(target=target, limit=SAMPLES, corrupt=corrupt, drop=drop, progress=False)
    assert (FaultRunConfig().corrupt, FaultRunConfig().drop) == (0.01, 0.005)
    assert (cfg.reply_timeout_s, cfg.max_retries, cfg.grace_s) == (2.0, 5, SessionConfig().grace_s)
    report = run_fault_benchmark(run, cfg, log=QUIET)
    assert report["ok"], report
    assert report["lines"] == report["unique_keys"] == report["expected_results"] == SAMPLES
    assert report["missing"] == report["duplicates"] == report["extra"] == report["results_lost"] == 0
    assert set(report["mismatches"].values()) == {0}
    faults, link = report["faults"], report["link"]
    assert faults["corrupted"] > 100 and faults["dropped"] > 50 and faults["config"]["drop"] == drop
    assert faults["to_device"]["corrupted"] > 0 and faults["to_host"]["corrupted"] > 0
    # The default --fec auto: FEC from the first request, a probe; the corrections in its replies keep it (the
    # device answers in kind); FEC repairs most damaged frames, so retries are few, the rest is still counted.
    fec = link["fec"]
    assert fec["mode"] == "auto" and fec["active"] and fec["switched_after_tries"] == 0
    assert fec["probe_bytes"] >= 256 and fec["probe_damaged_bytes"] >= 1 and fec["reason"].endswith(": FEC")
    assert fec["repaired_frames"] > 20 and fec["corrected_bytes"] > 0 and fec["recovered_drops"] > 0
    assert link["retries"] > 0 and link["resyncs"] > 0
    clean = report["clean_link"]  # undamaged: retries only as late replies on a loaded machine, never for damage
    assert clean["crc_errors"] == clean["resyncs"] == clean["nacks"] == 0 and clean["retries"] == clean["timeouts"]
    # a clean line: the probe's replies needed no correction, so auto went plain after a dozen FEC frames
    assert not clean["fec"]["active"] and clean["fec"]["probe_damaged_bytes"] == 0
    assert 1 <= clean["fec"]["frames_sent"] <= 20 and clean["fec"]["reason"].endswith(": plain")
    faulty_dir = run / "bench" / report["bench"]["faults"]
    assert json.loads((faulty_dir / "reliability.json").read_text()) == json.loads(json.dumps(report))
    summary = json.loads((faulty_dir / "summary.json").read_text())
    assert {k: summary["link"][k] for k in LINK_KEYS} == {k: link[k] for k in LINK_KEYS}
    assert summary["faults"]["injected"] == faults["injected"]
    assert "fault-injecting relay" in summary["simulated_or_real"]
    assert summary["status"] == "complete" and 0 < summary["link"]["frame_error_rate"] < 1
    assert 8 <= summary["link"]["load_chunk_min"] < 200  # the chunks shrank for the line
    records, _ = read_results(faulty_dir / "results.jsonl")
    assert len(Counter(r["exit"] for r in records)) >= 2  # early exit really took different paths
    return report


@pytest.mark.slow
def test_a_3_percent_line_on_the_host_agent_gives_the_clean_results(rel_run):
    report = _check_fault_run(rel_run, "agent", corrupt=0.03, drop=0.01)
    assert report["link"]["load_shrinks"] > 0


def test_noisy_link_on_the_host_agent_gives_the_clean_results_and_the_report_counts_retries(rel_run, capsys):
    report = _check_fault_run(rel_run, "agent")
    assert report["ticks_compared"] is False  # wall-clock ticks of a process: not comparable run to run
    assert main(["report", str(rel_run)]) == 0
    bench = json.loads((rel_run / "report" / "report.json").read_text())["bench"]
    link = bench[report["bench"]["faults"]]["link"]
    assert {k: link[k] for k in LINK_KEYS} == {k: report["link"][k] for k in LINK_KEYS}
    clean = bench[report["bench"]["clean"]]["link"]
    assert clean["crc_errors"] == clean["resyncs"] == 0 and clean["retries"] == clean["timeouts"]


@pytest.mark.slow
def test_noisy_link_on_qemu_gives_the_clean_results_and_tick_counts(rel_run, need_qemu):
    report = _check_fault_run(rel_run, "qemu")
    # exact: the port restarts the timer's phase at each measured interval (port_ticks_restart)
    assert report["ticks_compared"] and report["tick_tolerance"] == 0
    assert report["mismatches"]["ticks"] == 0 and report["max_tick_difference"] == 0
    assert report["ticks_identical"] == report["lines"]


def _kill_link_after(results, n: int, relay) -> threading.Thread:
    def watch():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if results.is_file() and results.read_bytes().count(b"\n") >= n:
                relay.set_dead()
                return
            time.sleep(0.005)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    return t


def _dead_then_resume(run, url: str, relay, samples: int) -> None:
    out = run / "bench" / "dead" / "results.jsonl"
    cfg = BenchConfig(modes=("early_exit",), warmup=0, limit=samples, progress=False, name="dead")  # defaults
    _kill_link_after(out, 30, relay)
    t0 = time.monotonic()
    with pytest.raises(UserError) as exc:
        run_benchmark(run, [url], cfg, log=QUIET)
    waited = time.monotonic() - t0
    msg = str(exc.value)
    assert "\n" not in msg and waited < 15, (waited, msg)
    # One truthful line: the time spent, that nothing came back, that the device answered before.
    m = re.fullmatch(rf"no answer from the device at {re.escape(url)} to (RUN|LOAD_INPUT) after \d+ tries "
                     r"\(1[2-4]\.\d s, nothing received for 1[2-4]\.\d s\); it answered earlier in this run, then went "
                     r"silent: .* \[(\d+) results written before this are kept in (.+); summary with the link counters "
                     r"in (.+); re-run with --resume to finish\]", msg)
    assert m and m.group(3) == str(out) and m.group(4) == str(out.parent / "summary.json"), msg
    failed = json.loads((out.parent / "summary.json").read_text())
    assert failed["status"] == "failed" and failed["lines"] == int(m.group(2)) and failed["error"] in msg
    assert failed["link"]["frames_sent"] > 0 and failed["link"]["timeouts"] > 0
    before, torn = read_results(out)
    assert torn is None and len(before) == int(m.group(2)) >= 30 == len({record_key(r) for r in before[:30]})
    relay.set_dead(False)
    from dataclasses import replace

    summary = run_benchmark(run, [url], replace(cfg, resume=True), log=QUIET)
    after, _ = read_results(out)
    assert after[:len(before)] == before and len(after) == samples == len({record_key(r) for r in after})
    assert summary["resume"]["previous_results"] == len(before) and summary["agreement_exit"] == 1.0


def test_a_dead_link_to_the_agent_ends_the_run_in_bounded_time_and_keeps_results(rel_run, spawn_agent):
    bridge = PtyBridge()
    try:
        spawn_agent(bridge.device_path, rel_run / "export" / "classifier")
        _dead_then_resume(rel_run, bridge.host_path, bridge, 100)
    finally:
        bridge.close()


@pytest.mark.slow
def test_a_dead_link_to_qemu_ends_the_run_in_bounded_time_and_keeps_results(rel_run, qemu_device):
    _, handle = qemu_device()
    relay = SocketRelay(handle.port)
    try:
        _dead_then_resume(rel_run, relay.url, relay, 100)
    finally:
        relay.close()


def test_a_later_fault_run_never_reuses_an_earlier_runs_directories(tmp_path):
    from tinyexit.firmware_bridge.reliability.fault_runs import _bench_names

    (tmp_path / "bench" / "reliability-host-agent-faults").mkdir(parents=True)
    assert _bench_names(tmp_path, FaultRunConfig()) == {"clean": "reliability-2-host-agent-clean",
                                                        "faults": "reliability-2-host-agent-faults"}
    assert _bench_names(tmp_path, FaultRunConfig(target="qemu"))["faults"] == "reliability-qemu-faults"
    with pytest.raises(UserError, match="reliability-host-agent-faults: exists from an earlier reliability run"):
        _bench_names(tmp_path, FaultRunConfig(name="reliability"))
