"""Stage entry of `tinyexit profile-device --target agent|URL`: the sweep's bundles timed on a device.

The agent times a RUN by wall clock around each segment it invokes
(agent/server.py): the first segment of a RUN starts right after the agent woke up
for the request (caches and branch predictors taken by the protocol code), a later
segment of the same RUN starts hot.  A bench's segment 0 and monolithic runs are
first intervals, its segments 1.. are hot ones, so a profile must price both.  Each
sweep model is therefore timed with RUN repeat 1 (one first interval) and with
RUN repeat R (one first interval and R - 1 hot ones, ticks summed by the device),
alternately, `repeats` times each; the profile keeps both medians and the fit
separates the per-RUN cost from the per-invoke one (eval/kernel_model.py).

A bench's RUN starts cold: between two RUNs of one mode it runs the other modes and
records every result (about 300 us per RUN here) while the agent waits, so the agent's
caches are taken by other models and other processes.  The host agent therefore also
times each model cold (`thrash`): its RUN of one invoke right after a RUN of one of the
sweep's two heaviest models on a second agent; the fit prices the difference per weight
byte, activation byte and layer, plus a switch per RUN (eval/kernel_model.py:
COLD_FEATURES).  Every RUN is followed by `gap_us` of harness work, as in a bench.
Timing `window` models round-robin, one agent each, is kept as an option: every RUN then
follows the others' RUNs and pays that switch too (about +45 % on a 2-core machine).

The exit decision is timed the same way: its sweep bundle has two tiny segments and
an early-exit RUN with a policy that always leaves at exit 0 makes the device run its
exit test once after segment 0; the RESULT's decision ticks are that test alone.

`time_models(spec, rows, work, cfg)` drives the normal protocol through a
DeviceSession; every model's figures are cached under `work` (keyed by the bundle,
the timing config and the device's identity), so an interrupted profile resumes.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tinyexit.errors import UserError


@dataclass(frozen=True)
class AgentTimingConfig:
    repeats: int = 15          # timed RUNs of each kind (repeat 1 and repeat `burst`) per model; medians kept
    warmup: int = 5            # untimed RUNs after the agent started
    burst: int = 8             # R: the RUN repeat whose later invokes are hot
    rounds: int = 3            # passes over the whole sweep; a model's runs of every pass are pooled
    window: int = 1            # host agent: models timed together, RUNs round-robin (caches taken in between)
    runtime: str = "litert"
    thrash: bool = True        # host agent: each model also timed cold, after a RUN of the heaviest sweep model
    thrash_repeat: int = 2     # invokes of that RUN (the heaviest model's weights and activations, touched twice)
    gap_us: float = 350.0      # harness busy after each RUN, as a bench is while it records a result (host agent)

    def __post_init__(self):
        if not 3 <= self.repeats <= 1000 or not 0 <= self.warmup <= 1000 or not 2 <= self.burst <= 64 \
                or not 1 <= self.rounds <= 20 or not 1 <= self.window <= 16 or not 1 <= self.thrash_repeat <= 64 \
                or not 0 <= self.gap_us <= 100_000:
            raise UserError(f"agent timing: repeats {self.repeats} / warmup {self.warmup} / burst {self.burst} / "
                            f"rounds {self.rounds} / window {self.window}: use 3..1000, 0..1000, 2..64, 1..20 and "
                            "1..16 (thrash_repeat 1..64, gap_us 0..100000)")

    def to_dict(self) -> dict:
        return asdict(self)


def agent_identity(spec: str, runtime: str) -> dict:
    """What a wall-clock profile was measured on: the host agent's runtime (name, version) and tinyexit's version,
    hashed; a device behind a URL is identified by its HELLO (filled in by `time_models`)."""
    import platform

    from tinyexit import __version__

    ident = {"target": spec, "tinyexit_version": __version__, "runtime": runtime, "python": platform.python_version(),
             "machine": platform.machine()}
    if spec == "agent":
        from tinyexit.firmware_bridge.agent.runtime import _import_tflite

        try:
            ident["runtime_version"] = _import_tflite(runtime)[2]
        except (ImportError, KeyError):
            ident["runtime_version"] = None
    ident["sha256"] = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()
    return ident


# Parameters with which every exit test passes at exit 0 (so an early-exit RUN runs exactly one)
_ALWAYS_LEAVE = {"max_softmax": (0.0,), "entropy": (1.0,), "patience": (1.0,)}


class _Device:
    """One sweep bundle on a started target: HELLO checked, one seeded input loaded."""

    def __init__(self, spec: str, row: dict, cfg: AgentTimingConfig, log_dir: Path, index: int):
        from tinyexit.bundle import load_bundle
        from tinyexit.firmware_bridge.harness.bench import BenchConfig
        from tinyexit.firmware_bridge.harness.session import DeviceSession
        from tinyexit.firmware_bridge.harness.targets import start_target
        from tinyexit.firmware_bridge.protocol import constants as pc

        self.row, self.policy = row, row["point"].get("policy")
        self.gap_s = cfg.gap_us * 1e-6 if spec == "agent" else 0.0
        art = load_bundle(Path(row["bundle"]))
        bcfg = BenchConfig(runtime=cfg.runtime, progress=False)
        self.target = start_target(spec, art.dir, art.dir, bcfg, log_dir, index)
        try:
            self.session = DeviceSession(self.target.link, bcfg.session, self.target.alive)
            self.info = self.session.handshake(None if self.target.kind == "agent"
                                               else bcfg.session.reply_timeout_s * 4)
            if self.info.hash_hex != art.artifact_hash:
                raise UserError(f"device at {self.target.url} runs artifact {self.info.hash_hex[:16]}, not the sweep "
                                f"model {art.model} ({art.artifact_hash[:16]}); profile a device that serves the "
                                "sweep bundles")
            x = np.random.default_rng(0).integers(-128, 128, art.input.nbytes, dtype=np.int64).astype(np.int8)
            room = min(self.info.max_payload, pc.MAX_PAYLOAD) - pc.LOAD_FIXED_SIZE
            self.session.load(0, x.tobytes(), max(1, room))
        except BaseException:
            self.target.close()
            raise
        self.first: list[float] = []
        self.burst: list[float] = []
        self.cold: list[float] = []

    def run(self, repeat: int) -> float:
        """One timed RUN in microseconds: `repeat` invokes of the model, or (a decision bundle) its exit test.
        Then the harness stays busy for the gap a bench spends recording a result (the device waits meanwhile:
        measured on the demo classifier, its RUNs cost 2-7 % more than back-to-back ones)."""
        from tinyexit.exit_policy import ExitPolicy
        from tinyexit.firmware_bridge.protocol import constants as pc, messages as m

        if self.policy is None:
            res = self.session.run(m.Run(pc.MODE_CHAIN, 0, 0, (), repeat, 0))
            _busy(self.gap_s)
            return 1e6 * res.ticks[0] / res.tick_hz
        pol = ExitPolicy(self.policy, _ALWAYS_LEAVE[self.policy])
        res = self.session.run(m.Run(pc.MODE_EARLY_EXIT, 0, pol.policy_id, pol.params, 1, 0))
        _busy(self.gap_s)
        if res.exit != 0:
            raise UserError(f"exit test {self.policy}: the device left at exit {res.exit}, not 0")
        return 1e6 * res.decision_ticks / res.tick_hz

    def result(self, burst: int) -> dict:
        ident = {"device_runtime": self.info.runtime_name, "device_version": self.info.version}
        if self.policy is not None:
            # the exit test runs between two segments of one RUN: no invoke, no RUN overhead of its own
            us = self.first + self.burst
            return {"us": float(np.median(us)), "us_runs": us, "hot_only": True,
                    "us_iqr": float(np.subtract(*np.percentile(us, [75, 25]))), **ident}
        out = {"us": float(np.median(self.first)), "us_burst": float(np.median(self.burst)), "burst": burst,
               "us_runs": self.first, "us_burst_runs": self.burst,
               "us_iqr": float(np.subtract(*np.percentile(self.first, [75, 25]))), **ident}
        if self.cold:
            out.update(us_cold=float(np.median(self.cold)), us_cold_runs=self.cold)
        return out


def _busy(seconds: float) -> None:
    """Keep the harness busy (not asleep: a sleeping harness lets the machine idle, which a bench does not)."""
    import time

    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def heaviest(rows: list[dict]) -> list[dict]:
    """The two sweep models with the most weight bytes (MACs per output pixel): each thrashes the caches before
    the other models' cold RUNs (and the second before the first's)."""
    def weights(row: dict) -> float:
        return sum(layer.get("macs", 0) / max(1, layer.get("out_pixels", 1)) for layer in row.get("layers", []))

    ops = [r for r in rows if r.get("bundle") and not r["point"].get("policy")]
    return sorted(ops, key=weights, reverse=True)[:2]


def _time_window(spec: str, rows: list[dict], cfg: AgentTimingConfig, log_dir: Path, thrashers=()) -> list:
    """Time `rows` together, one device per row, RUNs round-robin across them (window > 1: each RUN of a model
    follows RUNs of the others).  With `thrashers` (started devices of the heaviest models), each repeat also
    times every model cold: one invoke right after a RUN of a thrasher.  Per row: its result dict, or the
    exception that stopped it."""
    out: list = [None] * len(rows)
    devs: list = []
    try:
        for i, row in enumerate(rows):
            try:
                devs.append((i, _Device(spec, row, cfg, log_dir, i)))
            except Exception as exc:  # noqa: BLE001 - one model the device refuses is listed, the sweep goes on
                out[i] = exc
        for _ in range(cfg.warmup):
            for _, d in devs:
                d.run(1)
        for _ in range(cfg.repeats):  # alternated, so a burst of load on the machine hits every kind of RUN
            for _, d in devs:
                d.first.append(d.run(1))
            for _, d in devs:
                d.burst.append(d.run(cfg.burst))
            for _, d in devs:
                thr = next((t for t in thrashers if t.row["name"] != d.row["name"]), None)
                if thr is not None and d.policy is None:
                    thr.run(cfg.thrash_repeat)
                    d.cold.append(d.run(1))
        for i, d in devs:
            out[i] = d.result(cfg.burst)
    finally:
        for _, d in devs:
            d.target.close()
    return out


def time_models(spec: str, rows: list[dict], work: Path, cfg: AgentTimingConfig, identity: dict,
                progress=None) -> tuple[list[dict], list[dict]]:
    """(timed rows, skipped): each row gains us (median first interval; a decision bundle: its exit test),
    us_burst (median RUN of `burst` invokes) and their runs."""
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    todo = [r for r in rows if r.get("bundle")]
    got: dict = {}
    failed: dict = {}
    step = cfg.window if spec == "agent" else 1    # one device behind a URL serves one bundle at a time
    thrashers: list = []

    def start_thrashers() -> list:  # once, and only when a model is timed (a resumed profile may need none)
        if not thrashers and spec == "agent" and cfg.thrash:  # a URL device serves one bundle: nothing to thrash with
            for i, row in enumerate(heaviest(todo)):
                thrashers.append(_Device(spec, row, cfg, work / "logs", 100 + i))
        return thrashers

    try:
        _passes(spec, todo, work, cfg, identity, progress, step, start_thrashers, got, failed)
    finally:
        for t in thrashers:
            t.target.close()
    out = [row | _pooled(got[row["name"]]) for row in todo if row["name"] in got and row["name"] not in failed]
    return out, list(failed.values())


def _passes(spec, todo, work, cfg, identity, progress, step, start_thrashers, got, failed) -> None:
    for rnd in range(cfg.rounds):  # whole passes, so a burst of load on a shared machine hits one pass of a model
        for start in range(0, len(todo), step):
            if progress:
                progress(rnd * len(todo) + min(start + step, len(todo)), cfg.rounds * len(todo),
                         todo[start]["label"])
            window, caches = [], []
            for row in todo[start:start + step]:
                if row["name"] in failed:
                    continue
                key = hashlib.sha256(json.dumps([row["bundle"], row["point"], cfg.to_dict(), identity["sha256"],
                                                 rnd]).encode()).hexdigest()[:16]
                cache = work / f"{row['name']}-{key}.json"
                if cache.is_file():
                    got.setdefault(row["name"], []).append(json.loads(cache.read_text()))
                else:
                    window.append(row)
                    caches.append(cache)
            if not window:
                continue
            for row, cache, one in zip(window, caches, _time_window(spec, window, cfg, work / "logs",
                                                                    start_thrashers())):
                if isinstance(one, Exception):
                    failed[row["name"]] = {"point": row["point"], "why": f"{type(one).__name__}: {one}"}
                    continue
                cache.write_text(json.dumps(one))
                got.setdefault(row["name"], []).append(one)


def _pooled(passes: list[dict]) -> dict:
    """One model's passes: medians over every run of every pass."""
    first = [v for p in passes for v in p["us_runs"]]
    if passes[0].get("hot_only"):
        return passes[0] | {"us": float(np.median(first)), "us_runs": first, "passes": len(passes),
                            "us_iqr": float(np.subtract(*np.percentile(first, [75, 25])))}
    burst = [v for p in passes for v in p["us_burst_runs"]]
    out = passes[0] | {"us": float(np.median(first)), "us_burst": float(np.median(burst)), "us_runs": first,
                       "us_burst_runs": burst, "us_iqr": float(np.subtract(*np.percentile(first, [75, 25]))),
                       "passes": len(passes)}
    cold = [v for p in passes for v in p.get("us_cold_runs", [])]
    if cold:
        out.update(us_cold=float(np.median(cold)), us_cold_runs=cold)
    return out
