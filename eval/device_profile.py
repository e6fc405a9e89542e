"""Stage entry of `tinyexit profile-device`'s last step: measured sweep rows -> the device profile (a dict).

`qemu_profile(...)` and `wall_profile(...)` fit eval/kernel_model.py's predictors on the
sweep, score them by k-fold on the sweep (shapes never fitted) and record the device,
the kernels or runtime, the identity of what was measured (firmware and plugin
sha256, or the agent's identity hash), the sweep with every measurement and the
time each stage took.  `is_current(old, ...)` says whether a profile on disk was
measured on the same sweep and the same device identity (then it is kept).
"""
from __future__ import annotations

import hashlib
import json

import numpy as np

from tinyexit.eval.kernel_model import FEATURES, GEMM_BLOCKS, WALL_FEATURES, fit_profile, held_out_errors

SCHEMA = "tinyexit-device-profile/1"


def sweep_sha256(points: list[dict]) -> str:
    """The sweep and the feature sets it is fitted on: new kernel features (export/microbench_arm_dsp.py, and
    their names here) make an older profile stale rather than kept."""
    return hashlib.sha256(json.dumps([points, FEATURES]).encode()).hexdigest()


# A wall-clock fit's families and features (eval/kernel_model.py); a profile fitted on others is refitted (from the
# cached timings) rather than kept.  "pointwise": 1x1 stride-1 convolutions are their own family; the cold start
# refills the activation footprint (the largest layer), not every layer's traffic.
WALL_FIT = hashlib.sha256(json.dumps([WALL_FEATURES, "pointwise", "cold+switch", "arena footprint"]).encode()).hexdigest()[:16]


def is_current(old: dict | None, sweep_sha: str, identity_sha: str, config: dict) -> bool:
    return bool(old) and old.get("sweep", {}).get("sha256") == sweep_sha \
        and old.get("identity_sha256") == identity_sha and old.get("config") == json.loads(json.dumps(config)) \
        and (old.get("fit_key") != "us" or old.get("fit", {}).get("wall_fit") == WALL_FIT)


def _held(rows: list[dict], empty, target: str, feature_set: str, folds: int) -> dict:
    held = held_out_errors(rows, empty, folds, target, feature_set)
    for r, e in zip(rows, held):
        r["held_out_error"] = e
    return {"method": f"{folds}-fold over the sweep (shapes never fitted)",
            "max_abs_error": float(np.max(np.abs(held))), "median_abs_error": float(np.median(np.abs(held)))}


def qemu_profile(config: dict, rows: list[dict], empty: dict, skipped: list[dict], sweep_sha: str,
                 identity: dict, timing: dict, cycles_note: str) -> dict:
    """The QEMU profile: exact instructions (and modelled cycles) per kernel kind."""
    fit = fit_profile(rows, empty, ("instructions", "cycles_modelled"))
    held = _held(rows, empty, "instructions", "arm_dsp", 5)
    return {"schema": SCHEMA, "config": config,
            "device": {"target": "qemu", "board": "mps2-an386", "cpu": "cortex-m4", "kernels": identity["kernels"],
                       "simulated_or_real": "simulated (QEMU mps2-an386)",
                       "counter": "te_count QEMU plugin (exact instructions)"},
            "unit": "instructions", "identity": identity,
            "identity_sha256": identity["firmware_sources_sha256"] + identity["plugin_sha256"][:16],
            "firmware_sources_sha256": identity["firmware_sources_sha256"], "plugin_sha256": identity["plugin_sha256"],
            "cycles_modelled_note": cycles_note,
            "sweep": {"sha256": sweep_sha, "seed": config.get("seed"), "points": rows, "skipped": skipped},
            "empty": empty, "fit": fit, "held_out": held, "timing": timing}


def wall_profile(config: dict, timing_config: dict, rows: list[dict], skipped: list[dict], sweep_sha: str,
                 identity: dict, device: dict, subsample: str, timing: dict) -> dict:
    """A wall-clock profile (host agent, a device behind a serial URL): microseconds per kernel kind, with the
    per-invoke and per-RUN costs and (host agent) the cold start of a RUN fitted beside the kernels.  The GEMM block of the runtime's
    convolution (8 with AVX2 or NEON, 16 with AVX-512) is the one whose fit predicts held-out sweep models best."""
    folds = min(5, len(rows))
    choice = {f"wall:{b}": float(np.mean(np.abs(held_out_errors(rows, None, folds, "us", f"wall:{b}"))))
              for b in GEMM_BLOCKS}
    fs = min(choice, key=choice.get)
    fit = fit_profile(rows, None, ("us",), fs)
    fit["feature_set_choice"] = {"chosen": fs, "held_out_mean_abs_error": choice}
    fit["wall_fit"] = WALL_FIT
    held = _held(rows, None, "us", fs, folds)
    us = fit["us"]
    return {"schema": SCHEMA, "config": config, "agent_sweep": timing_config, "device": device,
            # "unit" matches the report's timing unit of these targets (seconds); the fit prices microseconds
            "unit": "s", "fit_key": "us", "identity": identity, "identity_sha256": identity["sha256"],
            "firmware_sources_sha256": None,
            "sweep": {"sha256": sweep_sha, "seed": config.get("seed"), "subsample": subsample, "points": rows,
                      "skipped": skipped},
            "empty": {"us": us["overhead"], "per_invoke_us": us["overhead"], "per_run_us": us["run_overhead"],
                      "cold_switch_us": us.get("switch_overhead"), "cold_per_layer": us.get("cold"),
                      "note": "fitted with the kernels: per invoke (every segment or monolithic model), per RUN "
                              "(the first invoke after the device woke up for a request) and, for a RUN that starts "
                              "cold (every RUN of a bench), a switch and a refill per weight byte, activation byte "
                              "and layer"},
            "fit": fit, "held_out": held, "timing": timing}


def log_line(prof: dict, out) -> str:
    fit = prof["fit"][prof.get("fit_key") or "instructions"]
    where = prof["device"].get("name") or prof["device"]["target"]
    return (f"profile-device: {len(prof['sweep']['points'])} models on {where}, held-out max "
            f"|error| {prof['held_out']['max_abs_error']:.2%}, median {prof['held_out']['median_abs_error']:.2%}; "
            f"in-sample max {fit['in_sample']['max_abs_error']:.2%}; {prof['timing']['total_s']:.0f} s -> {out}")
