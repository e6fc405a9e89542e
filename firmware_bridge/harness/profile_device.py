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

`time_models(spec, rows, work, cfg)` drives the normal protocol through a
DeviceSession; every model's figures are cached under `work` (keyed by the bundle,
the timing config and the device's identity), so an interrupted profile resumes.
The exit decision of the host agent (protocol/decide.ExitDecider, pure Python) is
timed in this process exactly as the agent times it (`time_decisions`); a device
behind a serial URL runs it where the harness cannot see, so there it is not profiled.
"""
from __future__ import annotations

import hashlib
import json
import time
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
    runtime: str = "litert"

    def __post_init__(self):
        if not 3 <= self.repeats <= 1000 or not 0 <= self.warmup <= 1000 or not 2 <= self.burst <= 64 \
                or not 1 <= self.rounds <= 20:
            raise UserError(f"agent timing: repeats {self.repeats} / warmup {self.warmup} / burst {self.burst} / "
                            f"rounds {self.rounds}: use 3..1000, 0..1000, 2..64 and 1..20")

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


def _time_one(spec: str, bundle: Path, cfg: AgentTimingConfig, log_dir: Path) -> dict:
    from tinyexit.bundle import load_bundle
    from tinyexit.firmware_bridge.harness.bench import BenchConfig
    from tinyexit.firmware_bridge.harness.session import DeviceSession
    from tinyexit.firmware_bridge.harness.targets import start_target
    from tinyexit.firmware_bridge.protocol import constants as pc, messages as m

    art = load_bundle(bundle)
    bcfg = BenchConfig(runtime=cfg.runtime, progress=False)
    target = start_target(spec, bundle, art.dir, bcfg, log_dir, 0)
    try:
        session = DeviceSession(target.link, bcfg.session, target.alive)
        info = session.handshake(None if target.kind == "agent" else bcfg.session.reply_timeout_s * 4)
        if info.hash_hex != art.artifact_hash:
            raise UserError(f"device at {target.url} runs artifact {info.hash_hex[:16]}, not the sweep model "
                            f"{art.model} ({art.artifact_hash[:16]}); profile a device that serves the sweep bundles")
        x = np.random.default_rng(0).integers(-128, 128, art.input.nbytes, dtype=np.int64).astype(np.int8)
        room = min(info.max_payload, pc.MAX_PAYLOAD) - pc.LOAD_FIXED_SIZE
        session.load(0, x.tobytes(), max(1, room))
        for _ in range(cfg.warmup):
            session.run(m.Run(pc.MODE_CHAIN, 0, 0, (), 1, 0))
        first, burst = [], []
        for _ in range(cfg.repeats):  # alternated, so a burst of load on the machine hits both alike
            for repeat, into in ((1, first), (cfg.burst, burst)):
                res = session.run(m.Run(pc.MODE_CHAIN, 0, 0, (), repeat, 0))
                into.append(1e6 * res.ticks[0] / res.tick_hz)
        return {"us": float(np.median(first)), "us_burst": float(np.median(burst)), "burst": cfg.burst,
                "us_runs": first, "us_burst_runs": burst,
                "us_iqr": float(np.subtract(*np.percentile(first, [75, 25]))),
                "device_runtime": info.runtime_name, "device_version": info.version}
    finally:
        target.close()


def time_models(spec: str, rows: list[dict], work: Path, cfg: AgentTimingConfig, identity: dict,
                progress=None) -> tuple[list[dict], list[dict]]:
    """(timed rows, skipped): each bundle row gains us (median first interval), us_burst (median RUN of `burst`
    invokes) and their runs.  Rows without a bundle (the exit decision) are left to `time_decisions`."""
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    todo = [r for r in rows if r.get("bundle")]
    got: dict = {}
    failed: dict = {}
    for rnd in range(cfg.rounds):  # whole passes, so a burst of load on a shared machine hits one pass of a model
        for i, row in enumerate(todo):
            if progress:
                progress(rnd * len(todo) + i + 1, cfg.rounds * len(todo), row["label"])
            if row["name"] in failed:
                continue
            key = hashlib.sha256(json.dumps([row["bundle"], row["point"], cfg.to_dict(), identity["sha256"], rnd])
                                 .encode()).hexdigest()[:16]
            cache = work / f"{row['name']}-{key}.json"
            if cache.is_file():
                got.setdefault(row["name"], []).append(json.loads(cache.read_text()))
                continue
            try:
                one = _time_one(spec, Path(row["bundle"]), cfg, work / "logs")
            except Exception as exc:  # noqa: BLE001 - one model the device refuses is listed, the sweep goes on
                failed[row["name"]] = {"point": row["point"], "why": f"{type(exc).__name__}: {exc}"}
                continue
            cache.write_text(json.dumps(one))
            got.setdefault(row["name"], []).append(one)
    out = [row | _pooled(got[row["name"]]) for row in todo if row["name"] in got and row["name"] not in failed]
    return out, list(failed.values())


def _pooled(passes: list[dict]) -> dict:
    """One model's passes: medians over every run of every pass."""
    first = [v for p in passes for v in p["us_runs"]]
    burst = [v for p in passes for v in p["us_burst_runs"]]
    return passes[0] | {"us": float(np.median(first)), "us_burst": float(np.median(burst)), "us_runs": first,
                        "us_burst_runs": burst, "us_iqr": float(np.subtract(*np.percentile(first, [75, 25]))),
                        "passes": len(passes)}


def time_decisions(rows: list[dict], cfg: AgentTimingConfig) -> list[dict]:
    """The host agent's exit test on n logits, timed as agent/server.py times it (perf_counter_ns around
    `passes(k, logits.reshape(-1).tolist())`), median of cfg.repeats x burst calls after a warm-up."""
    from tinyexit.exit_policy import ExitPolicy
    from tinyexit.firmware_bridge.protocol.decide import ExitDecider

    out = []
    for row in rows:
        if row.get("bundle") is not None or not row["point"].get("policy"):
            continue
        p = row["point"]
        n = int(p["cout"])
        params = (2.0,) if p["policy"] == "patience" else (0.5,)
        dec = ExitDecider(ExitPolicy(p["policy"], params), [(0.125, 0)])
        logits = np.random.default_rng(n).integers(-128, 128, n).astype(np.int8)
        clock, times = time.perf_counter_ns, []
        for i in range(cfg.warmup * cfg.burst + cfg.repeats * cfg.burst):
            dec.reset()
            t0 = clock()
            dec.passes(0, logits.reshape(-1).tolist())
            if i >= cfg.warmup * cfg.burst:
                times.append((clock() - t0) / 1e3)
        us = float(np.median(times))
        # the exit test runs between two segments of one RUN: always a hot interval
        out.append(row | {"us": us, "us_burst": us * cfg.burst, "burst": cfg.burst, "hot_only": True,
                          "us_runs": times[:50], "us_iqr": float(np.subtract(*np.percentile(times, [75, 25])))})
    return out
