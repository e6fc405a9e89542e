"""labgrid places as bench targets, on a local farm (coordinator, two exporters, ser2net, QEMU boards and a
host agent, all on 127.0.0.1): sharding, refusal of a held place, --wait, resume across places, release on
SIGTERM, and the stale acquisition a SIGKILLed harness leaves (released by the next run)."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tinyexit.errors import UserError
from tinyexit.firmware_bridge.harness import labgrid_target as lg
from tinyexit.firmware_bridge.harness.bench import BenchConfig, run_benchmark
from tinyexit.firmware_bridge.harness.farm_local import FarmConfig, farm_available, start_farm
from tinyexit.firmware_bridge.harness.results import read_results

pytestmark = [pytest.mark.slow, pytest.mark.qemu]

QUIET = dict(progress=False, warmup=0)


def _skip_without_farm():
    ok, why = farm_available()
    if not ok:
        pytest.skip(f"labgrid farm not installed: {why}")
    from tinyexit.firmware_bridge.harness.qemu import qemu_available

    ok, why = qemu_available()
    if not ok:
        pytest.skip(f"QEMU target not available: {why}")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    _skip_without_farm()
    from helpers.trained_runs import copy_run, exported_run

    return copy_run(exported_run(tmp_path_factory.mktemp("farm-base")), tmp_path_factory.mktemp("farm") / "run")


@pytest.fixture(scope="module")
def farm(run, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("farm-procs")
    farm = start_farm(run, FarmConfig(qemu=2, agents=1, exporters=2), workdir, log=lambda msg: None)
    yield farm
    pids = farm.pids()
    farm.stop()
    # nothing the farm started is left: no leader, and no process (ser2net included) naming its files
    assert not [p for p in pids if Path(f"/proc/{p}").exists() and _state(p) != "Z"]
    pty_paths = {p["path"] for p in farm.places.values()}
    left = [pid for pid, cmd in _processes() if str(workdir) in cmd or any(p in cmd.split() or
            f",{p}," in cmd for p in pty_paths) or farm.coordinator in cmd]
    assert left == []
    for name in farm.places:
        lg._lease_path(farm.coordinator, name).unlink(missing_ok=True)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def _processes():
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and int(d.name) != os.getpid():
            try:
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if cmd and _state(int(d.name)) != "Z":
                yield int(d.name), cmd


def _cfg(farm, **kw):
    return BenchConfig(coordinator=farm.coordinator, **{**QUIET, **kw})


def _bench(run, farm, targets, **kw):
    return lg.run_on_places(run_benchmark, run, targets, _cfg(farm, **kw), log=lambda msg: None)


def _free(farm, *names):
    return all(lg.show_place(farm.coordinator, n).acquired is None for n in names)


def _as(user: str) -> dict:
    return {"LG_USERNAME": user}


def test_patterns_select_places(farm):
    c = farm.coordinator
    assert lg.expand_places(["labgrid:qemu-*"], c) == ["labgrid:qemu-0", "labgrid:qemu-1"]
    assert lg.expand_places(["labgrid:kind=agent", "agent"], c) == ["labgrid:agent-0", "agent"]
    assert lg.expand_places(["labgrid:qemu-1"], c) == ["labgrid:qemu-1"]
    with pytest.raises(UserError, match=r"labgrid:kind=board: no labgrid place .* matches; places there: "
                                        r"agent-0, qemu-0, qemu-1"):
        lg.expand_places(["labgrid:kind=board"], c)
    with pytest.raises(UserError, match="labgrid place 'nope'"):
        lg.show_place(c, "nope")


def test_sharded_bench_over_two_places_equals_a_direct_bench(run, farm):
    modes = ("early_exit", "full")
    s = _bench(run, farm, ["labgrid:kind=qemu"], limit=24, modes=modes)
    assert s["target"] == "labgrid-kind=qemu" and s["status"] == "complete" and _free(farm, "qemu-0", "qemu-1")
    direct = run_benchmark(run, ["qemu"], BenchConfig(limit=24, modes=modes, name="direct", **QUIET),
                           log=lambda msg: None)
    assert direct["status"] == "complete"
    got, _ = read_results(run / "bench" / "labgrid-kind=qemu" / "results.jsonl")
    want, _ = read_results(run / "bench" / "direct" / "results.jsonl")
    assert len(got) == len(want) == 24 * 3  # full expands to full + full:all_exits
    key = lambda r: (r["sample"], r["mode"])  # noqa: E731
    fields = ("exit", "top1", "logits")
    assert {key(r): [r[f] for f in fields] for r in got} == {key(r): [r[f] for f in fields] for r in want}
    # Instruction counts agree up to the 25 MHz timer's phase: 1 tick = 40 instructions, and where in a tick a
    # request arrives depends on the UART wait loop, so each read may fall one tick either way.
    direct_ticks = {key(r): r["ticks"] + [r["decision_ticks"]] for r in want}
    assert max(abs(a - b) for r in got for a, b in zip(r["ticks"] + [r["decision_ticks"]],
                                                        direct_ticks[key(r)])) <= 2
    # round-robin over the sorted places: even samples on qemu-0, odd on qemu-1
    assert all(r["place"] == f"qemu-{r['sample'] % 2}" for r in got)
    places = s["places"]
    assert [p["samples"] for p in places["by_place"].values()] == [12, 12]
    (kind, group), = places["by_kind"].items()
    assert group["places"] == ["qemu-0", "qemu-1"] and group["all_equal_host_reference"] is True
    assert s["simulated_or_real"].startswith("simulated: QEMU mps2-an386 (Cortex-M4F) behind labgrid place")
    rfc = places["by_place"]["qemu-0"]["rfc2217"]
    assert rfc["serial_to_device"] > 0 and 0 < rfc["efficiency"] <= 1.0


def test_a_place_held_by_someone_else_is_refused_naming_the_holder(run, farm):
    lg.labgrid_client(farm.coordinator, "-p", "qemu-1", "acquire", env=_as("alice"))
    try:
        with pytest.raises(UserError, match=r"^labgrid place qemu-1 at .* is acquired by [^/]+/alice since .*; "
                                            r"re-run with --wait"):
            _bench(run, farm, ["labgrid:qemu-0", "labgrid:qemu-1"], limit=4, name="refused")
        assert _free(farm, "qemu-0")  # all or nothing: the place it got first is released again
        assert not (run / "bench" / "refused").exists()

        said = []

        def log(msg):  # the harness says it waits: alice releases, and it goes on (no sleeping and hoping)
            said.append(msg)
            if "waiting (--wait)" in msg:
                lg.labgrid_client(farm.coordinator, "-p", "qemu-1", "release", env=_as("alice"))

        s = lg.run_on_places(run_benchmark, run, ["labgrid:qemu-1"],
                             _cfg(farm, limit=4, modes=("early_exit",), name="waited", wait_s=120), log=log)
        assert s["status"] == "complete" and s["samples"] == 4
        assert any("qemu-1 is acquired by" in m and "/alice; waiting" in m for m in said)
        assert _free(farm, "qemu-1")
    finally:
        lg.labgrid_client(farm.coordinator, "-p", "qemu-1", "release", "--kick", env=_as("alice"), check=False)


def test_resume_continues_on_other_places(run, farm):
    first = _bench(run, farm, ["labgrid:qemu-0"], limit=10, modes=("early_exit",), name="resumed")
    assert first["samples"] == 10
    s = _bench(run, farm, ["labgrid:qemu-*"], limit=16, modes=("early_exit",), name="resumed", resume=True)
    recs, _ = read_results(run / "bench" / "resumed" / "results.jsonl")
    assert s["samples"] == 16 and sorted(r["sample"] for r in recs) == list(range(16))
    assert [r["place"] for r in sorted(recs, key=lambda r: r["sample"])][:10] == ["qemu-0"] * 10
    assert {r["place"] for r in recs if r["sample"] >= 10} == {"qemu-0", "qemu-1"}


def _cli(run, farm, *extra):
    cmd = [sys.executable, "-m", "tinyexit", "bench", str(run), "--target", "labgrid:agent-0", "--coordinator",
           farm.coordinator, "--warmup", "0", *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_first_result(path: Path, proc, timeout: float = 120.0) -> None:
    t0 = time.monotonic()
    while not (path.is_file() and path.read_text().count("\n") >= 1):
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() - t0 < timeout
        time.sleep(0.05)


def test_sigterm_releases_the_place(run, farm):
    proc = _cli(run, farm, "--name", "term")
    _wait_first_result(run / "bench" / "term" / "results.jsonl", proc)
    assert lg.show_place(farm.coordinator, "agent-0").acquired == lg.identity()
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode != 0 and _free(farm, "agent-0"), out
    assert not lg._lease_path(farm.coordinator, "agent-0").exists()
    assert json.loads((run / "bench" / "term" / "summary.json").read_text())["status"] == "interrupted"


def test_sigkill_leaves_an_acquisition_the_next_run_releases(run, farm):
    proc = _cli(run, farm, "--name", "killed")
    _wait_first_result(run / "bench" / "killed" / "results.jsonl", proc)
    proc.kill()
    proc.communicate(timeout=30)
    # labgrid keeps the acquisition: the coordinator cannot tell a dead client from a quiet one
    assert lg.show_place(farm.coordinator, "agent-0").acquired == lg.identity()
    lease = json.loads(lg._lease_path(farm.coordinator, "agent-0").read_text())
    assert lease["pid"] == proc.pid
    # someone else still cannot take it ...
    done = lg.labgrid_client(farm.coordinator, "-p", "agent-0", "acquire", env=_as("bob"), check=False)
    assert done.returncode != 0 and "already acquired" in done.stderr
    # ... but the next tinyexit run by the same labgrid user finds the dead lease, releases, and resumes
    again = _cli(run, farm, "--name", "killed", "--resume", "--limit", "60")
    out, _ = again.communicate(timeout=300)
    assert again.returncode == 0, out
    assert f"was left acquired by tinyexit pid {proc.pid}, which is gone; releasing" in out
    assert _free(farm, "agent-0") and not lg._lease_path(farm.coordinator, "agent-0").exists()


def test_a_live_own_run_is_not_taken_over(run, farm):
    """A lease whose process still runs is another tinyexit run: refused, not released."""
    lease = lg.acquire(farm.coordinator, "qemu-1")
    try:
        lg._HELD.clear()  # as if a different process held it
        with pytest.raises(UserError, match=rf"acquired by {lg.identity()} \(another tinyexit run, pid {os.getpid()}\)"):
            lg.acquire(farm.coordinator, "qemu-1")
    finally:
        lease.release()
    assert _free(farm, "qemu-1")
