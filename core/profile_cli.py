"""`tinyexit profile-device`: the CLI wiring and the composition of its stages (docs/latency.md).

  export/microbench.py, export/microbench_models.py   the sweep; its models as C or as agent bundles
  firmware_bridge/firmware/microbench_run.py          QEMU: one image, exact counts per model (te_count)
  firmware_bridge/harness/profile_device.py           agent / serial URL: medians of timed RUNs per model
  eval/device_profile.py, eval/kernel_model.py        the fit, held-out errors, the profile dict

Resumable: converted models, generated bundles and agent timings are cached under
<out>.work/, and a profile whose sweep and device identity are unchanged is kept.
With --run RUN, every bundle of the run also gets c/layers.json, so `tinyexit report
RUN` predicts its layers, segments, chains, exit paths and threshold sweep from
RUN/profiles/<target>.json.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from tinyexit.errors import UserError

TARGETS = ("qemu", "agent")  # or a serial URL (/dev/..., socket://, rfc2217://, labgrid:)
URL_PREFIXES = ("/dev/", "socket://", "rfc2217://", "loop://", "labgrid:")


@dataclass(frozen=True)
class ProfileConfig:
    target: str = "qemu"
    kernels: str = "arm_dsp"
    kinds: tuple[str, ...] | None = None      # None: every kind microbench can build
    seed: int = 7

    def __post_init__(self):
        if self.target not in TARGETS and not self.target.startswith(URL_PREFIXES):
            raise UserError(f"profile-device --target {self.target}: not a target; use qemu, agent or a serial URL "
                            f"({', '.join(URL_PREFIXES)}...)")

    def to_dict(self) -> dict:
        return asdict(self)


def register(sub) -> None:
    p = sub.add_parser("profile-device", help="fit per-kernel latency models from a microbenchmark sweep",
                       description="Run single-operator int8 models over a sweep of shapes on a device and fit "
                                   "one cost predictor per kernel kind (exact instruction counts under QEMU).")
    p.add_argument("--target", default="qemu", help="qemu (exact instructions), agent or a serial URL (wall clock, "
                                                    "median of --repeats)")
    p.add_argument("--per-kind", type=int, default=8, help="agent/URL: sweep points per kernel kind (conv: 3x), "
                                                            "a subsample of the QEMU sweep")
    p.add_argument("--repeats", type=int, default=15, help="agent/URL: timed RUNs per model, alternately of one "
                                                           "invoke and of --burst invokes (medians kept)")
    p.add_argument("--burst", type=int, default=8, help="agent/URL: invokes in the repeated RUN (its later "
                                                         "invokes start hot, as a chain's later segments do)")
    p.add_argument("--rounds", type=int, default=3, help="agent/URL: passes over the whole sweep, pooled (a burst "
                                                          "of load on a shared machine then hits one pass)")
    p.add_argument("--out", default=None, help="profile JSON (default: RUN/profiles/<target>.json with --run, "
                                               "else ./device-profile-<target>.json)")
    p.add_argument("--run", default=None, help="a run directory: write the profile there and c/layers.json "
                                               "into each of its bundles")
    p.add_argument("--kinds", default=None, help="comma-separated kernel kinds to sweep (default: all)")
    p.set_defaults(handler=_handler)


def _handler(args) -> int:
    kinds = tuple(k.strip() for k in args.kinds.split(",")) if args.kinds else None
    cfg = ProfileConfig(target=args.target, kinds=kinds)
    run = Path(args.run) if args.run else None
    name = cfg.target
    if cfg.target != "qemu":  # the report looks for RUN/profiles/<bench target name>.json (e.g. host-agent)
        from tinyexit.firmware_bridge.harness.targets import target_name
        name = target_name(cfg.target)
    out = Path(args.out) if args.out else (run / "profiles" / f"{name}.json" if run
                                           else Path(f"device-profile-{name}.json"))
    if cfg.target == "qemu":
        prof = profile_device(out, cfg)
    else:
        from tinyexit.firmware_bridge.harness.profile_device import AgentTimingConfig

        tc = AgentTimingConfig(repeats=args.repeats, burst=args.burst, rounds=args.rounds)
        prof = profile_agent(out, cfg, args.per_kind, tc, _progress)
    if run is not None:
        write_layer_tables(run)
    from tinyexit.eval.device_profile import log_line

    print(log_line(prof, out))
    return 0


def write_layer_tables(run: Path) -> list[Path]:
    """c/layers.json for every bundle of a run (the report prices their layers with a profile)."""
    from tinyexit.export.microbench import bundle_layer_table

    done = []
    for manifest in sorted((Path(run) / "export").glob("*/manifest.json")):
        bundle_layer_table(manifest.parent)
        done.append(manifest.parent / "c" / "layers.json")
    return done


def _progress(i: int, n: int, what: str) -> None:
    tty = sys.stderr.isatty()
    if not tty and i != n and i % max(1, n // 10):
        return  # a log file gets ten lines, a terminal one live bar
    end = "\n" if i == n or not tty else ""
    bar = "#" * (20 * i // max(n, 1))
    print(f"\rprofile-device [{bar:<20}] {i}/{n} {what:<50}", end=end, file=sys.stderr, flush=True)


def _load(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _kept(out: Path, sweep_sha: str, identity_sha: str, config: dict) -> dict | None:
    from tinyexit.eval.device_profile import is_current

    old = _load(out)
    if is_current(old, sweep_sha, identity_sha, config):
        print(f"profile-device: {out} is up to date (same sweep and device); kept", file=sys.stderr)
        return old
    return None


def profile_device(out: Path, cfg: ProfileConfig = ProfileConfig()) -> dict:
    """The QEMU profile -> out: sweep (export) -> one microbenchmark image under QEMU (firmware) -> fit (eval)."""
    from tinyexit.eval import device_profile as dp
    from tinyexit.export import microbench as mb
    from tinyexit.export.microbench_models import firmware_models
    from tinyexit.firmware_bridge.firmware import microbench_run as fr
    from tinyexit.rundir import write_json

    t0 = time.time()
    points = _points(mb.default_sweep(cfg.kinds, cfg.seed), cfg, mb)
    sweep_sha, identity = dp.sweep_sha256([p.to_dict() for p in points]), fr.firmware_identity(cfg.kernels)
    kept = _kept(out, sweep_sha, identity["firmware_sources_sha256"] + identity["plugin_sha256"][:16], cfg.to_dict())
    if kept:
        return kept
    work = out.parent / (out.name + ".work")
    rows, skipped = firmware_models(points, work, _progress)
    t_convert = time.time()
    empty, rows = fr.measure_microbench(work / "c", rows, work, cfg.kernels)
    t_run = time.time()
    timing = {"convert_s": t_convert - t0, "build_and_run_s": t_run - t_convert}
    prof = dp.qemu_profile(cfg.to_dict(), rows, empty, skipped, sweep_sha, identity, timing, fr.cycles_note())
    timing.update(fit_s=time.time() - t_run, total_s=time.time() - t0)
    write_json(out, prof)
    return prof


def _points(points: list, cfg: ProfileConfig, mb) -> list:
    if not points:
        raise UserError(f"profile-device --kinds {','.join(cfg.kinds or ())}: no such kernel kind; use some of "
                        f"{','.join(mb.SWEEP_KINDS)}")
    return points


def profile_agent(out: Path, cfg: ProfileConfig, per_kind: int = 8, tc=None, progress=None) -> dict:
    """A wall-clock profile of cfg.target ("agent" or a serial URL) -> out: sweep subsample and chain models
    (export) -> timed RUNs through the protocol (harness) -> fit (eval)."""
    from tinyexit.eval import device_profile as dp
    from tinyexit.export import microbench as mb
    from tinyexit.export.microbench_models import agent_models
    from tinyexit.firmware_bridge.harness import profile_device as hp
    from tinyexit.firmware_bridge.harness.targets import HOST_AGENT_LABEL, target_name
    from tinyexit.rundir import write_json

    t0 = time.time()
    tc = tc or hp.AgentTimingConfig()
    points = _points(mb.agent_sweep(cfg.kinds, cfg.seed, per_kind), cfg, mb)
    sweep_sha, identity = dp.sweep_sha256([p.to_dict() for p in points]), hp.agent_identity(cfg.target, tc.runtime)
    config = cfg.to_dict() | {"agent_sweep": {"per_kind": per_kind}, "timing": tc.to_dict()}
    kept = _kept(out, sweep_sha, identity["sha256"], config)
    if kept:
        return kept
    work = out.parent / (out.name + ".work") / "agent"
    rows, skipped = agent_models(points, work, progress)
    t_convert = time.time()
    timed, not_timed = hp.time_models(cfg.target, rows, work / "timings", tc, identity, progress)
    t_run = time.time()
    if len(timed) < 2:
        raise UserError(f"profile-device --target {cfg.target}: only {len(timed)} sweep model(s) ran; see "
                        f"{work} and the skipped list")
    agent = cfg.target == "agent"
    device = {"target": cfg.target, "name": target_name(cfg.target), "runtime": tc.runtime,
              "simulated_or_real": (f"{HOST_AGENT_LABEL} ({tc.runtime} on the host CPU, a simulated device)"
                                    if agent else f"device at {cfg.target}"),
              "device_runtime": next((r.get("device_runtime") for r in timed if r.get("device_runtime")), None),
              "counter": f"wall clock, medians of {tc.repeats} RUNs of 1 and of {tc.burst} invokes, after "
                         f"{tc.warmup} warm-up RUNs"}
    timing = {"convert_s": t_convert - t0, "build_s": 0.0, "run_s": t_run - t_convert}
    prof = dp.wall_profile(config, tc.to_dict(), timed, skipped + not_timed, sweep_sha, identity, device,
                           f"{per_kind} per kind (conv {3 * per_kind}) of the QEMU sweep, the deep end of a CNN, "
                           f"and {sum(p.depth > 1 for p in points)} chains of 2-8 layers", timing)
    timing.update(fit_s=time.time() - t_run, total_s=time.time() - t0)
    write_json(out, prof)
    return prof
