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
TARGETS = ("qemu",)  # agent and serial URLs: not yet (see docs/latency.md)


@dataclass(frozen=True)
class ProfileConfig:
    target: str = "qemu"
    kernels: str = "arm_dsp"
    kinds: tuple[str, ...] | None = None      # None: every kind microbench can build
    seed: int = 7

    def __post_init__(self):
        if self.target not in TARGETS:
            raise UserError(f"profile-device --target {self.target}: not supported yet; use one of "
                            f"{', '.join(TARGETS)} (the host agent and serial URLs are planned, docs/latency.md)")

    def to_dict(self) -> dict:
        return asdict(self)


def register(sub) -> None:
    p = sub.add_parser("profile-device", help="fit per-kernel latency models from a microbenchmark sweep",
                       description="Run single-operator int8 models over a sweep of shapes on a device and fit "
                                   "one cost predictor per kernel kind (exact instruction counts under QEMU).")
    p.add_argument("--target", default="qemu", help="qemu (agent and serial URLs: planned)")
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
    out = Path(args.out) if args.out else (run / "profiles" / f"{cfg.target}.json" if run
                                           else Path(f"device-profile-{cfg.target}.json"))
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
