"""The fault-injection benchmark: `run_fault_benchmark(run_dir, FaultRunConfig) -> report dict`.

Benchmarks the test split on one target twice: once on a clean link, once
through a seeded relay that corrupts, drops, duplicates, splits, delays and
stalls bytes (faults.py: a pty bridge for the host agent, a loopback TCP relay
for QEMU), optionally killing the device `resets` times mid-run (the harness
restarts it).  Then compares the two results.jsonl files key by key: the exit
taken and the int8 logits must be identical, and on QEMU the tick counts too
(instruction-counted, and exact: the mps2 port restarts the timer's phase at
each measured interval, port_ticks_restart); every key must appear exactly once.  Writes
RUN/bench/<name>-<target>-faults/reliability.json beside that run's summary.
"""
from __future__ import annotations

import math
import os
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

from tinyexit.errors import UserError
from tinyexit.firmware_bridge.harness.faults import FaultConfig
from tinyexit.firmware_bridge.harness.results import read_results, record_key
from tinyexit.firmware_bridge.harness.session import SessionConfig
from tinyexit.firmware_bridge.harness.targets import target_name

# Allowed tick difference per measured interval; other targets' ticks are wall-clock and not compared.  Under
# QEMU -icount the instruction count is exact, and the mps2 port restarts the 25 MHz timer's phase at each
# measured interval (port_ticks_restart), so the ticks of a run equal those of any other run: none allowed.
DETERMINISTIC_TICKS = {"qemu": 0}
_DEVICE_PROCESS = {"agent": "tinyexit agent", "qemu": "qemu-system-arm"}
LINK_KEYS = ("frames", "retries", "crc_errors", "corrupt_frames", "resyncs", "timeouts", "nacks", "stale_replies",
             "resets", "restarts", "load_shrinks", "payload_efficiency", "frame_error_rate", "load_chunk_min",
             "request_tries", "failed_tries", "fec")


@dataclass(frozen=True)
class FaultRunConfig:
    target: str = "agent"              # agent | qemu: devices tinyexit starts, so a relay can sit in between
    model: str = "classifier"
    corrupt: float = 0.01              # per byte, each direction
    drop: float = 0.005
    duplicate: float = 0.0
    insert: float = 0.0                # per byte: a random noise byte before it
    split: float = 0.0                 # per chunk written
    delay: float = 0.0
    stall: float = 0.0
    seed: int = 1
    modes: tuple[str, ...] = ("early_exit",)
    limit: int | None = None           # first N test samples (None: the whole split)
    resets: int = 0                    # device kills spread over the faulty run; the harness restarts it
    # The session's own defaults: the adaptive timeout and chunking must cope without tuning (issue 15).
    reply_timeout_s: float = SessionConfig.reply_timeout_s
    max_retries: int = SessionConfig.max_retries
    grace_s: float = SessionConfig.grace_s
    fec: str = SessionConfig.fec       # auto | on | off, for both runs (auto stays plain on the clean line)
    name: str | None = None            # bench directory prefix; None: reliability, reliability-2, ... (first free)
    progress: bool = True

    def __post_init__(self):
        object.__setattr__(self, "modes", tuple(self.modes))
        if self.target not in _DEVICE_PROCESS:
            raise UserError(f"--target {self.target}: fault runs need a device tinyexit starts; use agent or qemu")
        if not 0 <= self.resets <= 100:
            raise UserError(f"--resets {self.resets}: use 0..100")
        if self.name is not None and (not self.name or "/" in self.name or self.name.startswith(".")):
            raise UserError(f"--name '{self.name}': use a plain directory name")
        SessionConfig(fec=self.fec)  # --fec checked now
        self.faults()  # probabilities checked now

    def faults(self) -> FaultConfig:
        return FaultConfig(corrupt=self.corrupt, drop=self.drop, duplicate=self.duplicate, insert=self.insert,
                           split=self.split,
                           delay=self.delay, stall=self.stall, seed=self.seed)

    def to_dict(self) -> dict:
        return {**self.__dict__, "modes": list(self.modes)}

    @classmethod
    def from_dict(cls, d: dict) -> "FaultRunConfig":
        return cls(**d)


def run_fault_benchmark(run_dir, cfg: FaultRunConfig, log=print) -> dict:
    """Clean run, faulty run, comparison; returns (and writes) the reliability report."""
    from tinyexit.firmware_bridge.harness.bench import BenchConfig, run_benchmark
    from tinyexit.rundir import require_run_dir, write_json

    run = require_run_dir(run_dir)
    names = _bench_names(run, cfg)
    base = BenchConfig(model=cfg.model, modes=cfg.modes, warmup=0, limit=cfg.limit, progress=cfg.progress,
                       session=SessionConfig(fec=cfg.fec))
    log(f"reliability: clean run on {cfg.target} -> bench/{names['clean']}")
    t0 = time.monotonic()
    clean = run_benchmark(run, [cfg.target], replace(base, name=names["clean"]), log=log)
    clean_s = time.monotonic() - t0
    faulty_cfg = replace(base, name=names["faults"], faults=cfg.faults(), max_resets=cfg.resets + 10,
                         session=SessionConfig(reply_timeout_s=cfg.reply_timeout_s, max_retries=cfg.max_retries,
                                               grace_s=cfg.grace_s, fec=cfg.fec))
    expected = clean["samples_requested"] * len(clean["modes"]) * clean["repeats"]
    log(f"reliability: faulty run ({_describe(cfg)}) -> bench/{names['faults']}")
    killer = DeviceKiller(cfg.target, run / "bench" / names["faults"] / "results.jsonl", expected, cfg.resets, log)
    t0 = time.monotonic()
    try:
        faulty = run_benchmark(run, [cfg.target], faulty_cfg, log=log)
    finally:
        killer.stop()
    faulty_s = time.monotonic() - t0
    report = compare_runs(run / "bench" / names["clean"] / "results.jsonl",
                          run / "bench" / names["faults"] / "results.jsonl", DETERMINISTIC_TICKS.get(cfg.target))
    report.update({"target": cfg.target, "config": cfg.to_dict(), "expected_results": expected,
                   "faults": faulty.get("faults"), "devices_killed": killer.kills,
                   "link": {k: faulty["link"].get(k) for k in LINK_KEYS},
                   "clean_link": {k: clean["link"].get(k) for k in LINK_KEYS},
                   "wall_s": {"clean": round(clean_s, 1), "faults": round(faulty_s, 1)},
                   "bench": {"clean": names["clean"], "faults": names["faults"]}})
    report["results_lost"] = report["missing"]
    report["ok"] = (report["missing"] == report["duplicates"] == report["extra"] == 0
                    and not any(report["mismatches"].values()) and report["lines"] == expected)
    write_json(run / "bench" / names["faults"] / "reliability.json", report)
    log(one_line(report))
    return report


def _bench_names(run: Path, cfg: FaultRunConfig) -> dict[str, str]:
    """Bench directories of the clean and faulty runs; an earlier run's are never reused."""
    def names(prefix: str) -> dict[str, str]:
        return {kind: f"{prefix}-{target_name(cfg.target)}-{kind}" for kind in ("clean", "faults")}

    def taken(n: dict) -> list[Path]:
        return [run / "bench" / name for name in n.values() if (run / "bench" / name).exists()]

    if cfg.name is not None:
        if taken(names(cfg.name)):
            raise UserError(f"{taken(names(cfg.name))[0]}: exists from an earlier reliability run; pass another "
                            "--name (nothing there is overwritten)")
        return names(cfg.name)
    k = 1
    while taken(names("reliability" if k == 1 else f"reliability-{k}")):
        k += 1
    return names("reliability" if k == 1 else f"reliability-{k}")


def _describe(cfg: FaultRunConfig) -> str:
    rates = [f"{k} {getattr(cfg, k):g}" for k in ("corrupt", "drop", "duplicate", "insert", "split", "delay", "stall")
             if getattr(cfg, k)]
    return (", ".join(rates or ["no faults"]) + f", seed {cfg.seed}, FEC {cfg.fec}"
            + (f", {cfg.resets} resets" if cfg.resets else ""))


def compare_runs(clean_path: Path, faulty_path: Path, tick_tolerance: int | None) -> dict:
    """Key-by-key comparison of two results.jsonl files; `tick_tolerance` None: ticks not compared."""
    clean, _ = read_results(clean_path)
    faulty, torn = read_results(faulty_path)
    reference = {record_key(r): r for r in clean}
    seen = Counter(record_key(r) for r in faulty)
    mismatches = Counter({"exit": 0, "logits": 0, "host_reference": 0})
    max_tick_diff, identical = 0, 0
    for r in faulty:
        c = reference.get(record_key(r))
        if c is None:
            continue
        mismatches["exit"] += r["exit"] != c["exit"]
        mismatches["logits"] += r["logits"] != c["logits"]
        mismatches["host_reference"] += not r.get("host_logits_equal", True)
        if tick_tolerance is not None:
            diff = _tick_diff(r, c)
            max_tick_diff = max(max_tick_diff, diff)
            identical += diff == 0
            mismatches["ticks"] += diff > tick_tolerance
    return {"lines": len(faulty), "unique_keys": len(seen), "clean_lines": len(clean),
            "missing": sum(1 for k in reference if k not in seen),
            "duplicates": sum(n - 1 for n in seen.values()), "extra": sum(1 for k in seen if k not in reference),
            "torn_line": torn, "mismatches": dict(mismatches),
            "ticks_compared": tick_tolerance is not None, "tick_tolerance": tick_tolerance,
            "max_tick_difference": max_tick_diff if tick_tolerance is not None else None,
            "ticks_identical": identical if tick_tolerance is not None else None}


def _tick_diff(a: dict, b: dict) -> int:
    """Largest tick difference per measured interval (rounded up, so any difference at all counts).  A tick
    entry sums `runs` intervals; decision_ticks sums one exit test per segment executed (at most) per run."""
    if len(a["ticks"]) != len(b["ticks"]) or a.get("runs", 1) != b.get("runs", 1):
        return 1 << 62
    runs = max(1, a.get("runs", 1))
    worst = max((abs(x - y) for x, y in zip(a["ticks"], b["ticks"])), default=0) / runs
    decision = abs(a.get("decision_ticks", 0) - b.get("decision_ticks", 0)) / (runs * max(1, len(a["ticks"])))
    return math.ceil(max(worst, decision))


def one_line(r: dict) -> str:
    f = r.get("faults") or {}
    link = r["link"]
    status = "identical to the clean run" if r["ok"] else "DIFFERENT from the clean run"
    return (f"reliability {r['target']}: {r['lines']} results of {r['expected_results']} expected, "
            f"{f.get('injected', 0)} faults injected ({f.get('corrupted', 0)} corrupted, {f.get('dropped', 0)} "
            f"dropped bytes), {r['devices_killed']} device kills; retries {link['retries']}, CRC errors "
            f"{link['crc_errors']}, resyncs {link['resyncs']}, timeouts {link['timeouts']}, resets "
            f"{link['resets']}; lost {r['results_lost']}, duplicated {r['duplicates']}; {status}")


class DeviceKiller:
    """Kills the device process (a child of this process) at evenly spaced points of a run: a reset."""

    def __init__(self, target: str, results: Path, expected: int, resets: int, log=print):
        self.pattern, self.results, self.log = _DEVICE_PROCESS[target], results, log
        self.points = [expected * (i + 1) // (resets + 1) for i in range(resets)]
        self.kills = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="device-killer", daemon=True)
        if self.points:
            self._thread.start()

    def _watch(self) -> None:
        while self.points and not self._stop.wait(0.02):
            done = _count_lines(self.results)
            if done >= self.points[0]:
                pids = child_pids(self.pattern)
                for pid in pids:
                    os.kill(pid, signal.SIGKILL)
                if pids:
                    self.kills += 1
                    self.points.pop(0)
                    self.log(f"reliability: killed the device ({self.pattern}, pid {pids[0]}) after {done} results")

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)


def _count_lines(path: Path) -> int:
    try:
        with open(path, "rb") as f:
            return f.read().count(b"\n")
    except FileNotFoundError:
        return 0


def child_pids(pattern: str, parent: int | None = None) -> list[int]:
    """Live child processes of `parent` (default: this process) whose command line contains `pattern`."""
    parent = os.getpid() if parent is None else parent
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            state = stat.rsplit(")", 1)[1].split()[0]
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue
        if ppid == parent and state != "Z" and pattern in cmd:
            found.append(int(entry.name))
    return sorted(found)
