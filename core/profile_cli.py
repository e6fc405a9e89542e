"""`tinyexit profile-device`: a device's per-kernel cost model from a microbenchmark sweep.

Composition only: export/microbench.py generates the single-operator int8 models and
their C, the firmware room builds one microbenchmark image and runs it under QEMU with
the te_count plugin (exact instruction counts per model, per instruction class), and
eval/kernel_model.py fits one predictor per kernel kind.  The profile (JSON) records
the device, the kernels, the firmware sources' hash, the sweep with every measurement,
the fit and the time each stage took.  Resumable: converted models are cached under
<out>.work/, and a profile whose sweep and firmware are unchanged is kept.

With --run RUN, every bundle of the run also gets c/layers.json (the features of each
layer the firmware runs), so `tinyexit report RUN` can predict every segment, chain
and monolithic model from RUN/profiles/<target>.json.
"""
from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from tinyexit.errors import UserError

SCHEMA = "tinyexit-device-profile/1"
TARGETS = ("qemu", "agent")  # or a serial URL (/dev/..., socket://, rfc2217://, labgrid:): core/profile_agent.py
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
    p.add_argument("--repeats", type=int, default=15, help="agent/URL: timed runs per model (the median is kept)")
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
    if cfg.target != "qemu":
        prof = profile_agent(out, cfg, AgentSweepConfig(per_kind=args.per_kind, repeats=args.repeats), _progress)
        if run is not None:
            write_layer_tables(run)
        print(log_line(prof, out))
        return 0
    prof = profile_device(out, cfg)
    if run is not None:
        write_layer_tables(run)
    fit = prof["fit"]["instructions"]
    print(f"profile-device: {len(prof['sweep']['points'])} models, held-out max |error| "
          f"{prof['held_out']['max_abs_error']:.2%}, median {prof['held_out']['median_abs_error']:.2%}; "
          f"in-sample max {fit['in_sample']['max_abs_error']:.2%}; {prof['timing']['total_s']:.0f} s -> {out}")
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


def profile_device(out: Path, cfg: ProfileConfig = ProfileConfig()) -> dict:
    from tinyexit.eval.kernel_model import fit_profile, held_out_errors
    from tinyexit.export import microbench as mb
    from tinyexit.firmware_bridge.firmware import plugin as fp
    from tinyexit.firmware_bridge.firmware.build import firmware_sources_sha256
    from tinyexit.firmware_bridge.harness.qemu import LABEL
    from tinyexit.rundir import write_json

    t0 = time.time()
    points = mb.default_sweep(cfg.kinds, cfg.seed)
    if not points:
        raise UserError(f"profile-device --kinds {','.join(cfg.kinds or ())}: no such kernel kind; use some of "
                        f"{','.join(mb.SWEEP_KINDS)}")
    sweep_key = hashlib.sha256(json.dumps([p.to_dict() for p in points]).encode()).hexdigest()
    fw_sha = firmware_sources_sha256()
    old = _load(out)
    if old and old.get("sweep", {}).get("sha256") == sweep_key and old.get("firmware_sources_sha256") == fw_sha \
            and old.get("config") == json.loads(json.dumps(cfg.to_dict())):
        print(f"profile-device: {out} is up to date (same sweep and firmware); kept", file=sys.stderr)
        return old
    work = out.parent / (out.name + ".work")
    blobs, kept, skipped = [], [], []
    for i, p in enumerate(points):  # the slow stage (TensorFlow's converter): cached, so a rerun resumes
        _progress(i + 1, len(points), p.label)
        try:
            blobs.append(_cached_tflite(work / "tflite", p, i))
            kept.append(p)
        except UserError as exc:
            skipped.append({"point": p.to_dict(), "why": str(exc)})
    t_convert = time.time()
    rows, not_generated = _generate(mb, kept, blobs, work / "c")
    skipped += not_generated
    elf = fp.build_microbench(work / "c", [r["name"] for r in rows], max(r["arena_bytes"] for r in rows),
                              work, cfg.kernels)
    so = fp.build_plugin(work)
    t_build = time.time()
    empty, counts = fp.run_microbench(elf, so, work)
    t_run = time.time()
    for r, c in zip(rows, counts):
        r.update(instructions=c["total"], cycles_modelled=fp.modelled_cycles(c), classes=c)
    empty = {"instructions": empty["total"], "cycles_modelled": fp.modelled_cycles(empty), "classes": empty}
    fit = fit_profile(rows, empty, ("instructions", "cycles_modelled"))
    held = held_out_errors(rows, empty)
    for r, e in zip(rows, held):
        r["held_out_error"] = e
    t_fit = time.time()
    import numpy as np

    prof = {"schema": SCHEMA, "config": cfg.to_dict(),
            "device": {"target": cfg.target, "board": "mps2-an386", "cpu": "cortex-m4", "kernels": cfg.kernels,
                       "simulated_or_real": LABEL, "counter": "te_count QEMU plugin (exact instructions)"},
            "unit": "instructions", "firmware_sources_sha256": fw_sha,
            "plugin_sha256": hashlib.sha256(fp.SOURCE.read_bytes()).hexdigest(),
            "cycles_modelled_note": fp.CYCLES_NOTE,
            "sweep": {"sha256": sweep_key, "seed": cfg.seed, "points": rows, "skipped": skipped},
            "empty": empty, "fit": fit,
            "held_out": {"method": "5-fold over the sweep (shapes never fitted)",
                         "max_abs_error": float(np.max(np.abs(held))),
                         "median_abs_error": float(np.median(np.abs(held)))},
            "timing": {"convert_s": t_convert - t0, "build_s": t_build - t_convert, "run_s": t_run - t_build,
                       "fit_s": t_fit - t_run, "total_s": t_fit - t0}}
    write_json(out, prof)
    return prof


def _load(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _cached_tflite(folder: Path, point, seed: int) -> bytes:
    from tinyexit.export.microbench import single_op_tflite

    key = hashlib.sha256(json.dumps([point.to_dict(), seed]).encode()).hexdigest()[:16]
    path = folder / f"{point.kind}-{key}.tflite"
    if path.is_file():
        return path.read_bytes()
    blob = single_op_tflite(point, seed)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(blob)
    tmp.replace(path)
    return blob


def _generate(mb, points, blobs, c_dir: Path) -> tuple[list[dict], list[dict]]:
    """C for every point the code generator takes; the others are listed with the reason."""
    rows, skipped = [], []
    for i, (p, blob) in enumerate(zip(points, blobs)):
        try:
            row = mb.write_sweep_c([p], [blob], c_dir, name=f"mb{len(rows)}")[0]
        except UserError as exc:
            skipped.append({"point": p.to_dict(), "why": str(exc)})
            continue
        rows.append(row)
    return rows, skipped


# --- agent and serial URL targets ------------------------------------------------------------
# `tinyexit profile-device --target agent|URL`: a per-kernel wall-clock model from a microbenchmark sweep.
#
# The host agent (or a device behind a serial URL) runs TFLite files, not the firmware's
# C, so each sweep model becomes an agent-servable single-segment bundle (the same
# import as `tinyexit import`: tflm/segment_0 plus the multi-signature file with an
# `exit0` signature) and is benchmarked through the normal harness (`run_benchmark`,
# modes `segments`).  Wall clock is noisy: each model runs `repeats` timed runs after a
# warm-up and the profile keeps their median, in microseconds.  The fit is
# eval/kernel_model.py's with the "wall" feature set (MACs, bytes, output pixels per
# operator family).  Resumable: every measured model is cached under <out>.work/agent/.
#
# The sweep is a subsample of the QEMU sweep (export/microbench.default_sweep):
# `per_kind` points per kernel kind, evenly spaced over that kind's list, so one agent
# sweep takes a few minutes.  A model whose output exceeds one protocol frame ends in a
# spatial MEAN (export/microbench.single_op_tflite(max_out_bytes=...)), priced jointly.

MAX_OUT_BYTES = 256          # a RESULT holds at most 256 logits (protocol MAX_LOGITS)
# The fixed cost of one invoke, apart from the per-operator dispatch: a one-operator model (1x1 FULLY_CONNECTED)
# and a model of more operators doing nothing (a 1x1x1 ADD, and its FULLY_CONNECTED tail); their difference per
# operator is the dispatch cost, which the kernels' "one" carry, so a model of many layers pays it per layer.
EMPTY_POINTS = ({"kind": "fc", "h": 1, "w": 1, "cin": 1, "cout": 1, "relu": False},
                {"kind": "add", "h": 1, "w": 1, "cin": 1, "relu": False})


@dataclass(frozen=True)
class AgentSweepConfig:
    per_kind: int = 8        # sweep points per kernel kind (conv: 3x, it has the most shapes)
    repeats: int = 15        # timed runs per model; the median is kept
    warmup: int = 5
    runtime: str = "litert"

    def __post_init__(self):
        if not 1 <= self.per_kind <= 200 or not 3 <= self.repeats <= 1000:
            raise UserError(f"agent sweep: per_kind {self.per_kind} / repeats {self.repeats}: use 1..200 and "
                            "3..1000")

    def to_dict(self) -> dict:
        return asdict(self)


def agent_sweep(kinds, seed: int, per_kind: int) -> list:
    """Every kind's points of the QEMU sweep, subsampled evenly to `per_kind` (conv: 3 * per_kind)."""
    import numpy as np

    from tinyexit.export import microbench as mb

    full = mb.default_sweep(kinds, seed)
    out = []
    for kind in dict.fromkeys(p.kind for p in full):
        pts = [p for p in full if p.kind == kind]
        n = min(len(pts), per_kind * (3 if kind == "conv" else 1))
        out += [pts[int(i)] for i in np.linspace(0, len(pts) - 1, n).round().astype(int)]
    return out


def _measure(spec: str, blob: bytes, name: str, work: Path, sc: AgentSweepConfig) -> dict:
    """Median wall-clock microseconds of one single-segment model on the target (cached by the file's hash)."""
    import numpy as np

    from tinyexit.export.import_tflite import ImportConfig, import_tflite
    from tinyexit.firmware_bridge.harness import run_benchmark
    from tinyexit.firmware_bridge.harness.bench import BenchConfig
    from tinyexit.firmware_bridge.harness.targets import target_name

    key = hashlib.sha256(blob + json.dumps([spec, sc.to_dict()]).encode()).hexdigest()[:16]
    cache = work / f"{name}-{key}.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    run = work / key
    src = run / "model.tflite"
    src.parent.mkdir(parents=True, exist_ok=True)
    src.write_bytes(blob)
    import_tflite([src], run, ImportConfig(name=name, generate_c=False), progress=lambda *_: None)
    bundle = run / "export" / name
    cfg = BenchConfig(modes=("segments",), repeats=sc.repeats, warmup=sc.warmup, limit=1, progress=False,
                      runtime=sc.runtime, name=f"profile-{target_name(spec)}")
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()) as said:  # the bench's own log lines, kept beside its results
        try:
            run_benchmark(bundle, [spec], cfg)
        finally:
            (bundle / "bench" / "profile.log").parent.mkdir(parents=True, exist_ok=True)
            (bundle / "bench" / "profile.log").write_text(said.getvalue())
    us = []
    for line in (bundle / "bench" / cfg.name / "results.jsonl").read_text().splitlines():
        r = json.loads(line)
        if r.get("mode") == "segment:0" and r.get("ticks"):
            us.append(1e6 * r["ticks"][0] / r["tick_hz"] / (r.get("runs") or 1))
    if len(us) < 3:
        raise UserError(f"{bundle}: the target returned {len(us)} timed runs of {name}; want >= 3 (see its bench "
                        "log under bench/)")
    got = {"us": float(np.median(us)), "us_runs": us, "us_iqr": float(np.subtract(*np.percentile(us, [75, 25])))}
    cache.write_text(json.dumps(got))
    return got


def profile_agent(out: Path, cfg, sc: AgentSweepConfig = AgentSweepConfig(), progress=None) -> dict:
    """The wall-clock device profile of `cfg.target` ("agent" or a serial URL) -> out (JSON)."""
    import numpy as np

    from tinyexit.eval.kernel_model import fit_profile, held_out_errors
    from tinyexit.export import microbench as mb
    from tinyexit.firmware_bridge.harness.targets import HOST_AGENT_LABEL, target_name
    from tinyexit.rundir import write_json

    t0 = time.time()
    points = agent_sweep(cfg.kinds, cfg.seed, sc.per_kind)
    if not points:
        raise UserError(f"profile-device --kinds {','.join(cfg.kinds or ())}: no such kernel kind; use some of "
                        f"{','.join(mb.SWEEP_KINDS)}")
    work = out.parent / (out.name + ".work") / "agent"
    work.mkdir(parents=True, exist_ok=True)
    rows, skipped, t_convert, t_run = [], [], 0.0, 0.0
    empties = [mb.SweepPoint(**e) for e in EMPTY_POINTS]
    for i, p in enumerate(empties + points):
        if progress:
            progress(i + 1, len(points) + len(empties), p.label)
        t = time.time()
        try:
            blob = _cached_blob(work, p, i)
        except UserError as exc:
            skipped.append({"point": p.to_dict(), "why": str(exc)})
            continue
        t_convert += time.time() - t
        t = time.time()
        name = f"mbempty{i}" if i < len(empties) else f"mb{i - len(empties)}"
        try:
            got = _measure(cfg.target, blob, name, work, sc)
        except Exception as exc:  # noqa: BLE001 - one model the target refuses is listed, the sweep goes on
            if i < len(empties):
                raise
            skipped.append({"point": p.to_dict(), "why": f"{type(exc).__name__}: {exc}"})
            continue
        finally:
            t_run += time.time() - t
        rows.append({"name": name, "point": p.to_dict(), "label": p.label,
                     "layers": mb.model_layers(blob, name, arm_dsp_layout=False), **got})
    (e0, e1), rows = rows[:len(empties)], rows[len(empties):]
    per_op = max(0.0, (e1["us"] - e0["us"]) / max(1, len(e1["layers"]) - len(e0["layers"])))
    empty = {"us": max(0.0, e0["us"] - per_op * len(e0["layers"])), "us_iqr": e0["us_iqr"]}
    if len(rows) < 2:
        raise UserError(f"profile-device --target {cfg.target}: only {len(rows)} sweep model(s) ran; see "
                        f"{work} and the skipped list")
    fit = fit_profile(rows, {"us": empty["us"]}, ("us",), "wall")
    folds = min(5, len(rows))
    held = held_out_errors(rows, {"us": empty["us"]}, folds, "us", "wall")
    for r, e in zip(rows, held):
        r["held_out_error"] = e
    t_fit = time.time()
    agent = cfg.target == "agent"
    prof = {"schema": "tinyexit-device-profile/1", "config": cfg.to_dict(), "agent_sweep": sc.to_dict(),
            "device": {"target": cfg.target, "name": target_name(cfg.target), "runtime": sc.runtime,
                       "simulated_or_real": (f"{HOST_AGENT_LABEL} ({sc.runtime} on the host CPU, a simulated "
                                             "device)") if agent else f"device at {cfg.target}",
                       "counter": f"wall clock, median of {sc.repeats} timed runs after {sc.warmup} warm-up"},
            # "unit" matches the report's timing unit of these targets (seconds); the fit prices microseconds
            "unit": "s", "fit_key": "us", "firmware_sources_sha256": None,
            "sweep": {"sha256": hashlib.sha256(json.dumps([p.to_dict() for p in points]).encode()).hexdigest(),
                      "seed": cfg.seed, "subsample": f"{sc.per_kind} per kind (conv {3 * sc.per_kind}), evenly "
                                                    "spaced over the QEMU sweep's points of each kind",
                      "points": rows, "skipped": skipped},
            "empty": {"us": empty["us"], "points": list(EMPTY_POINTS), "measured_us": [e0["us"], e1["us"]],
                      "per_operator_us": per_op, "us_iqr": empty["us_iqr"],
                      "note": "invoke overhead without operators: the one-operator model less one operator's "
                              "dispatch (the difference of the two empty models per operator)"}, "fit": fit,
            "held_out": {"method": f"{folds}-fold over the sweep (shapes never fitted)",
                         "max_abs_error": float(np.max(np.abs(held))),
                         "median_abs_error": float(np.median(np.abs(held)))},
            "timing": {"convert_s": t_convert, "build_s": 0.0, "run_s": t_run, "fit_s": time.time() - t_fit,
                       "total_s": time.time() - t0}}
    write_json(out, prof)
    return prof


def _cached_blob(work: Path, p, seed: int) -> bytes:
    from tinyexit.export.microbench import single_op_tflite

    key = hashlib.sha256(json.dumps([p.to_dict(), seed, MAX_OUT_BYTES]).encode()).hexdigest()[:16]
    path = work / "tflite" / f"{p.kind}-{key}.tflite"
    if path.is_file():
        return path.read_bytes()
    blob = single_op_tflite(p, seed, MAX_OUT_BYTES)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(blob)
    return blob


def log_line(prof: dict, out: Path) -> str:
    fit = prof["fit"]["us"]
    return (f"profile-device: {len(prof['sweep']['points'])} models on {prof['device']['name']}, held-out max "
            f"|error| {prof['held_out']['max_abs_error']:.2%}, median {prof['held_out']['median_abs_error']:.2%}; "
            f"in-sample max {fit['in_sample']['max_abs_error']:.2%}; {prof['timing']['total_s']:.0f} s -> {out}")
