"""Stage entry of the host side: `run_benchmark(path, targets, BenchConfig) -> summary dict`.

`path` is a run directory (its bundle RUN/export/<model>) or a bundle directory
itself (a folder with manifest.json, copied anywhere: a Raspberry Pi or a lab
host with only `pip install 'tinyexit[agent]'`).  Everything comes from the
bundle: the model, the exit policy and the test inputs (inputs.npz); without
inputs, seeded synthetic inputs are streamed and every accuracy is absent.
Streams the inputs through one worker per target (the samples are sharded
round-robin), the device deciding early exits itself; adds full-depth and
per-segment-chain runs so every exit path's latency is measured; checks each
result against the host's int8 reference; appends every result to
<path>/bench/<name>/results.jsonl as it arrives and writes summary.json at the end.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from tinyexit import __version__
from tinyexit.errors import UserError
from tinyexit.firmware_bridge.protocol import constants as pc
from tinyexit.bundle import Bundle, load_bundle, read_inputs, synthetic_inputs, verify_files
from tinyexit.firmware_bridge.harness.summary import summarize
from tinyexit.firmware_bridge.harness.worker import BenchContext, Worker
from tinyexit.firmware_bridge.harness.faults import FaultConfig
from tinyexit.firmware_bridge.harness.power import open_monitor, parse_power_spec
from tinyexit.firmware_bridge.harness.results import ResultsWriter, read_results
from tinyexit.firmware_bridge.harness.session import LinkStats, SessionConfig
from tinyexit.firmware_bridge.harness.targets import bench_name
from tinyexit.rundir import load_config, read_json, require_run_dir, write_json

SYNTHETIC_N = 447  # seeded synthetic inputs streamed when the bundle carries none (the digits test split's size)

MODES = ("early_exit", "full", "segments")


@dataclass(frozen=True)
class BenchConfig:
    model: str = "classifier"
    modes: tuple[str, ...] = MODES       # "segments" expands to segment:0 .. segment:E-1 (chains 0..k)
    repeats: int = 1                     # timed runs per (sample, mode), each its own results line
    warmup: int = 3                      # untimed runs per mode when a session starts
    limit: int | None = None             # first N test samples only
    resume: bool = False
    power: str | None = None             # power monitor spec (power.parse_power_spec)
    energy_repeats: int = 200            # back-to-back runs inside one measured energy window
    name: str | None = None              # bench directory name; default from the targets
    runtime: str = "litert"              # runtime of a spawned host agent
    baud: int = pc.DEFAULT_BAUD
    session: SessionConfig = field(default_factory=SessionConfig)
    max_resets: int = 10                 # device restarts tolerated per worker
    progress: bool = True
    faults: FaultConfig | None = None    # tests and `tinyexit reliability`: a seeded fault-injecting relay
    coordinator: str | None = None       # labgrid coordinator HOST:PORT of labgrid:PLACE targets
    wait_s: float | None = None          # wait this long for a held labgrid place (None: refuse it at once)

    def __post_init__(self):
        object.__setattr__(self, "modes", tuple(self.modes))
        if isinstance(self.session, dict):
            object.__setattr__(self, "session", SessionConfig.from_dict(self.session))
        if isinstance(self.faults, dict):
            object.__setattr__(self, "faults", FaultConfig.from_dict(self.faults))
        bad = [m for m in self.modes if m not in MODES]
        if bad or not self.modes:
            raise UserError(f"--modes {','.join(self.modes)}: unknown {bad or 'empty'}; use a comma list of "
                            f"{', '.join(MODES)}")
        if not 1 <= self.repeats <= 1000 or not 0 <= self.warmup <= 1000:
            raise UserError(f"--repeats {self.repeats} / --warmup {self.warmup}: use 1..1000 and 0..1000")
        if self.limit is not None and self.limit < 1:
            raise UserError(f"--limit {self.limit}: must be >= 1")
        if not 1 <= self.energy_repeats <= pc.MAX_REPEAT:
            raise UserError(f"--energy-repeats {self.energy_repeats}: use 1..{pc.MAX_REPEAT}")
        if self.baud <= 0 or not 0 <= self.max_resets <= 1000:
            raise UserError(f"--baud {self.baud} / --max-resets {self.max_resets}: use a baud rate > 0 and "
                            "0..1000 resets")
        if self.name is not None and (not self.name or "/" in self.name or self.name.startswith(".")):
            raise UserError(f"--name '{self.name}': use a plain directory name")
        if self.wait_s is not None and self.wait_s < 0:
            raise UserError(f"--wait {self.wait_s}: give seconds >= 0")
        if self.power:
            parse_power_spec(self.power)  # a malformed spec fails before anything runs

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["modes"], d["session"] = list(self.modes), self.session.to_dict()
        d["faults"] = self.faults.to_dict() if self.faults else None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "BenchConfig":
        return cls(**{**d, "modes": tuple(d["modes"]), "session": SessionConfig.from_dict(d["session"]),
                      "faults": FaultConfig.from_dict(d["faults"]) if d.get("faults") else None})


def run_benchmark(run_dir, targets: list[str], cfg: BenchConfig = BenchConfig(), log=print, monitor=None) -> dict:
    """Benchmark RUN/export/<model> (or the bundle directory `run_dir`) on every target; returns the summary
    also written to summary.json.

    `monitor`: an already open power monitor (start()/stop() -> PowerTrace, a `name`) used with
    cfg.power's spec for labels, instead of opening the meter cfg.power names.
    """
    bundle_dir, root = locate(run_dir, cfg.model)
    targets = list(targets)
    if not targets:
        raise UserError("no --target given; use --target agent, --target qemu or a serial URL")
    if monitor is not None and not cfg.power:
        raise UserError("a power monitor was given without cfg.power naming its kind (e.g. 'ppk2:PORT')")
    if cfg.power and len(targets) > 1:
        raise UserError("--power measures one device; give a single --target with it")
    art = load_bundle(bundle_dir)
    cfg = replace(cfg, model=art.model)  # a bundle directory names its own model
    verify_files(art, onnx=cfg.runtime == "onnxruntime")  # a damaged file is named here, not by a device later
    if "early_exit" in cfg.modes and art.policy is None:
        log(f"bench: {art.dir}/manifest.json has no exit policy ({art.model}); early_exit skipped")
        cfg = replace(cfg, modes=tuple(m for m in cfg.modes if m != "early_exit") or ("segments",))
    inputs = bench_inputs(art, cfg.limit, log)
    x, y = inputs.x, inputs.labels
    out = root / "bench" / (cfg.name or bench_name(targets))
    _check_previous(out, art, cfg)
    # The meter is opened before anything is written or run: a missing package or port fails now.
    if cfg.power and monitor is None:
        monitor = open_monitor(parse_power_spec(cfg.power))
    writer = ResultsWriter(out / "results.jsonl", cfg.resume, log)
    write_json(out / "bench_config.json", {"tinyexit_version": __version__, "model": art.model,
                                           "artifact_hash": art.artifact_hash, "targets": targets,
                                           "config": cfg.to_dict()})
    ctx = BenchContext(root, art, x, y, cfg, writer, multi=len(targets) > 1, log=log, monitor=monitor,
                       t=inputs.t)
    workers = [Worker(i, spec, list(range(i, len(y), len(targets))), ctx) for i, spec in enumerate(targets)]
    log(f"bench: {len(y)} samples x {len(ctx.modes)} modes x {cfg.repeats} repeat(s) of {art.model} on "
        f"{len(targets)} target(s) -> {out}")
    started = time.monotonic()
    failure: BaseException | None = None
    try:
        _run_workers(workers, ctx)
    except BaseException as exc:  # a failed or interrupted run still writes its summary (link counters too)
        failure = exc
    finally:
        ctx.close_progress()
        writer.close()
    summary = _write_summary(out, art, ctx, workers, time.monotonic() - started, writer, inputs, failure, log)
    # A run refused before any byte went to a device (a busy port, a bad URL) has nothing to resume.
    started_talking = bool(((summary or {}).get("link") or {}).get("frames_sent"))
    if isinstance(failure, UserError) and started_talking:
        new = len(writer.done) - writer.previous
        kept = (f"{new} results written before this are kept in {writer.path}; " if new else "")
        raise UserError(f"{failure} [{kept}summary with the link counters in {out / 'summary.json'}; "
                        "re-run with --resume to finish]") from None
    if failure is not None:
        raise failure
    return summary


def _write_summary(out: Path, art, ctx, workers, wall_s: float, writer, inputs, failure, log) -> dict:
    """summary.json of a complete, failed or interrupted run: every result written and every link counter."""
    records, _ = read_results(out / "results.jsonl")
    stats = LinkStats()
    for w in workers:
        if w.stats is not None:
            stats.merge(w.stats)
    status = ("complete" if failure is None else "interrupted" if isinstance(failure, KeyboardInterrupt)
              else "failed")
    try:
        summary = summarize(records, art, ctx, workers, stats, wall_s, writer)
    except Exception as exc:  # too few results for every figure: keep what is certain
        if failure is None:
            raise
        summary = {"tinyexit_version": __version__, "target": out.name, "model": art.model,
                   "artifact_hash": art.artifact_hash, "samples": len({r["sample"] for r in records}),
                   "samples_requested": int(len(ctx.y)), "modes": list(ctx.modes), "repeats": ctx.cfg.repeats,
                   "link": stats.to_dict(), "payload_efficiency": stats.to_dict()["payload_efficiency"],
                   "wall_s": round(wall_s, 3), "figures_skipped": f"{type(exc).__name__}: {exc}"}
    summary["status"] = status
    summary["lines"] = len(records)
    if failure is not None:
        summary["error"] = str(failure) or type(failure).__name__
    summary["inputs"] = inputs.source
    summary["inputs_detail"] = inputs.detail()
    summary["results"] = str(out / "results.jsonl")
    if any(r.get("place") for r in records):  # labgrid targets: figures per place and per device kind
        from tinyexit.firmware_bridge.harness.place_figures import per_place

        summary["places"] = per_place(records, workers)
    write_json(out / "summary.json", summary)
    if failure is not None:
        log(f"bench: {status} after {wall_s:.1f} s with {len(records)} results; summary in {out / 'summary.json'}")
    return summary


def _run_workers(workers: list, ctx: BenchContext) -> None:
    threads = [threading.Thread(target=w.run, name=f"bench-{w.index}", daemon=True) for w in workers]
    for t in threads:
        t.start()
    try:
        for t in threads:
            while t.is_alive():
                t.join(0.2)
    except KeyboardInterrupt:
        ctx.abort.set()  # workers stop after their current request; what is written stays
        for t in threads:
            t.join(30)
        raise
    errors = [w.error for w in workers if w.error is not None]
    if errors:
        raise errors[0]


def locate(path, model: str) -> tuple[Path, Path]:
    """(bundle directory, output root): a bundle directory (manifest.json in it) is its own root; a run
    directory's bundle is RUN/export/<model> and results go under RUN."""
    p = Path(path)
    if (p / "manifest.json").is_file():
        return p.resolve(), p.resolve()
    run = require_run_dir(p)
    load_config(run)  # refuses a run directory written by a newer tinyexit
    return run / "export" / model, run


@dataclass(frozen=True)
class BenchInputs:
    x: np.ndarray                # (N, *input shape[1:]) int8
    labels: np.ndarray           # (N,) int64 class labels; -1 where unknown (accuracy is then absent)
    t: np.ndarray | None         # (N,) the denoiser's diffusion step of each input, from the bundle
    source: str

    def detail(self) -> dict:
        return {"source": self.source, "n": int(len(self.x)), "labels": bool((self.labels >= 0).any()),
                "timesteps": self.t is not None}


def bench_inputs(art: Bundle, limit: int | None, log) -> BenchInputs:
    """The bundle's test inputs (inputs.npz); without them, seeded synthetic inputs with unknown labels (-1).

    Only a classifier's y are labels; a denoiser's y are its clean targets, so its labels stay unknown
    and its t (the step each input was noised to) travels into every result line."""
    if art.inputs:
        got = read_inputs(art, limit)
        n = len(got.x)
        labelled = art.has_labels and got.y is not None and np.ndim(got.y) == 1
        labels = np.asarray(got.y, np.int64) if labelled else np.full(n, -1, np.int64)
        source = str(art.inputs.get("source") or "test split")
        return BenchInputs(got.x, labels, None if got.t is None else np.asarray(got.t, np.int64), source)
    n = limit or SYNTHETIC_N
    log(f"bench: {art.dir}/manifest.json lists no test inputs; using {n} seeded synthetic inputs "
        "(timing and device/host agreement only, no accuracy)")
    return BenchInputs(synthetic_inputs(art, n), np.full(n, -1, dtype=np.int64), None,
                       "synthetic (seeded, uniform over the float input range)")


def _check_previous(out: Path, art, cfg: BenchConfig) -> None:
    prev = out / "bench_config.json"
    if not (cfg.resume and prev.is_file()):
        return
    old = read_json(prev)
    if old.get("artifact_hash") != art.artifact_hash or old.get("model") != art.model:
        raise UserError(f"{out}: measured on {old.get('model')} artifact {str(old.get('artifact_hash'))[:12]}, "
                        f"but the export is now {art.model} {art.artifact_hash[:12]}; resume is refused, "
                        "use --name for a new bench directory")
