"""The harness dies mid-run (SIGKILL; a write cut by a full disk): results.jsonl stays readable, a torn last line
is detected, discarded (kept aside) and reported, and `--resume` finishes with every result exactly once."""
import json
import os
import resource
import signal
import subprocess
import sys
import time

from tinyexit.firmware_bridge.harness.results import read_results, record_key

SAMPLES, MODES = 150, 4  # early_exit + segment:0..2


def _bench_cmd(run, *extra):
    return [sys.executable, "-m", "tinyexit", "bench", str(run), "--target", "agent", "--modes", "early_exit,segments",
            "--limit", str(SAMPLES), "--warmup", "0", *extra]


def _resume(run, out, before, torn: bytes):
    res = subprocess.run(_bench_cmd(run, "--resume"), capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "Traceback" not in res.stderr
    assert f"{out}: discarded a torn last line ({len(torn)} bytes, left by an interrupted run); its bytes are kept " \
           f"in {out}.torn" in res.stdout
    assert (out.parent / "results.jsonl.torn").read_bytes() == torn + b"\n"
    after, again = read_results(out)
    assert again is None and after[:len(before)] == before
    assert len(after) == SAMPLES * MODES == len({record_key(r) for r in after})
    summary = json.loads((out.parent / "summary.json").read_text())
    assert summary["resume"]["previous_results"] == len(before)
    assert summary["resume"]["torn_line"]["bytes"] == len(torn) and summary["agreement_exit"] == 1.0


def test_sigkill_mid_run_then_resume_discards_the_torn_line_and_finishes(rel_run):
    out = rel_run / "bench" / "host-agent" / "results.jsonl"
    proc = subprocess.Popen(_bench_cmd(rel_run), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not out.is_file() or out.read_bytes().count(b"\n") < 200):
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before, torn = read_results(out)
    assert 200 <= len(before) < SAMPLES * MODES
    # What SIGKILL during a write leaves: the first bytes of the next line.  Appended here because a kill
    # landing inside write(2) is too rare to wait for; the disk-full test below tears a line for real.
    partial = out.read_bytes()[-1 - len(json.dumps(before[-1], separators=(",", ":"))):][:60]
    if torn is None:
        with open(out, "ab") as f:
            f.write(partial)
    else:
        partial = out.read_bytes()[torn["offset"]:]
    records, torn = read_results(out)
    assert records == before and (torn["bytes"], torn["offset"]) == (len(partial), out.stat().st_size - len(partial))
    _resume(rel_run, out, before, partial)


def _limit_file_size(limit: int):
    def apply():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_a_write_cut_by_a_full_disk_leaves_a_torn_line_that_reading_and_resume_handle(rel_run, capsys):
    out = rel_run / "bench" / "host-agent" / "results.jsonl"
    limit = 30_000  # bytes: results.jsonl hits it mid-line; every other file the run writes is smaller
    res = subprocess.run(_bench_cmd(rel_run), capture_output=True, text=True, timeout=120,
                         preexec_fn=_limit_file_size(limit))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith(f"tinyexit: error: {out}: cannot append a result (File too large); free disk space") \
        and "re-run with --resume" in last, last
    assert out.stat().st_size == limit
    before, torn = read_results(out)
    assert torn is not None and torn["bytes"] > 0 and not out.read_bytes().endswith(b"\n")
    tail = out.read_bytes()[torn["offset"]:]
    # The report reads what is there: the torn line is dropped and said so, nothing breaks.
    from tinyexit.cli import main

    assert main(["report", str(rel_run)]) == 0
    bench = json.loads((rel_run / "report" / "report.json").read_text())["bench"]["host-agent"]
    assert bench["discarded_torn_line"] is True
    capsys.readouterr()
    _resume(rel_run, out, before, tail)
