"""Latency predicted from a device profile: every layer, segment, chain, monolithic model and early-exit path.

The profile (`tinyexit profile-device`, RUN/profiles/<target>.json) was fitted on a
microbenchmark sweep only, so every figure here is out of model: the bundles were
never used in fitting.  Each bundle's c/layers.json (written by profile-device) gives
the features of the layers the firmware runs; `eval.kernel_model.predict_layers`
prices them.  How a path is timed decides its overheads: every invoke (segment or
monolithic model) pays the per-invoke overhead, the first invoke of a RUN request the
per-RUN one (zero under QEMU), and an early-exit path the exit test after each
segment it leaves or passes.  Beside each prediction: the measured median and a
MAC-only prediction (per MAC and a constant, fitted on the same sweep), so a reader
sees what the kernel model buys, and the kernel kinds that hold the difference.
Without a profile there is no prediction (`no_profile`): the report says how to make one.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tinyexit.eval import bench_results as br
from tinyexit.eval.kernel_model import decision_layer, fit_key, layer_family, main_layer, predict_layers


def find_profile(run_dir: Path, target: str, unit: str) -> tuple[dict | None, Path | None]:
    """RUN/profiles/<target>.json (target: "qemu", "host-agent", ...) when it measures in `unit`; a bench named
    after its model ("qemu-denoiser", "host-agent-denoiser") finds its target's profile, and a bench with a name
    of its own the run's only profile in that unit."""
    parts = target.split("-")
    names = ["-".join(parts[:n]) for n in range(len(parts), 0, -1)]
    for name in names:
        path = Path(run_dir) / "profiles" / f"{name}.json"
        if path.is_file():
            prof = json.loads(path.read_text())
            if prof.get("unit") == unit:
                return prof, path
    # a bench given its own --name: the run's one profile in that unit, if there is exactly one
    found = []
    for path in sorted((Path(run_dir) / "profiles").glob("*.json")):
        try:
            prof = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(prof, dict) and prof.get("unit") == unit:
            found.append((prof, path))
    return found[0] if len(found) == 1 else (None, None)


def mac_only(profile: dict) -> tuple[float, float]:
    """(per MAC, constant) fitted on the sweep points that have MACs (weighted by 1/measured, non-negative)."""
    from scipy.optimize import nnls

    pts = [p for p in profile["sweep"]["points"] if sum(layer.get("macs", 0) for layer in p["layers"])]
    a = np.array([[sum(layer.get("macs", 0) for layer in p["layers"]), 1.0] for p in pts])
    y = np.array([float(p[fit_key(profile)]) for p in pts])
    w = 1.0 / y
    scale = a.max(axis=0)
    coef, _ = nnls(a * w[:, None] / scale, y * w)
    return float(coef[0] / scale[0]), float(coef[1] / scale[1])


def _layer_table(run_dir: Path, model: str) -> dict | None:
    path = Path(run_dir) / "export" / model / "c" / "layers.json"
    return json.loads(path.read_text()) if path.is_file() else None


# Where a bench RUN starts on a wall clock, between the sweep's warm state (after the model's own RUN) and its cold
# state (after another process ran): measured on the host, a bench on a quiet machine runs near the warm figures
# and one beside other engineers' jobs near the cold ones (their caches taken while the agent waits between RUNs);
# the prediction is the midpoint, and each row keeps both ends (predicted_warm, predicted_cold).
BENCH_COLD_SHARE = 0.5


def _row(name: str, kind: str, layers: list[dict], macs: float, measured, profile: dict, mac_coef, n_calls=1,
         first: bool = True, decisions: int = 0, cold: list[dict] | None = None):
    """`n_calls` invokes of `layers` (the first starting a RUN when `first`), `decisions` exit tests (their
    layers are in `layers`; each is timed as its own interval on the firmware) and the `cold` layers' refill."""
    dec = decisions * profile["fit"][fit_key(profile)].get("decision_overhead", 0.0)
    pred = predict_layers(profile, layers, calls=n_calls, first=first, cold=cold, cold_share=BENCH_COLD_SHARE)
    value = pred["value"] + dec
    mac_pred = mac_coef[0] * macs + mac_coef[1] * n_calls
    row = {"name": name, "kind": kind, "macs": macs, "measured": measured, "predicted": value,
           "mac_only": mac_pred, "by_kind": {k: round(v, 3) for k, v in pred["by_kind"].items()},
           "out_of_range": pred["out_of_range"], "unknown_kinds": pred["unknown_kinds"]}
    if cold and profile["fit"][fit_key(profile)].get("cold"):
        row["predicted_warm"] = predict_layers(profile, layers, calls=n_calls, first=first)["value"] + dec
        row["predicted_cold"] = predict_layers(profile, layers, calls=n_calls, first=first, cold=cold)["value"] + dec
    row["rel_error"] = (value - measured) / measured if measured else None
    row["mac_only_rel_error"] = (mac_pred - measured) / measured if measured else None
    return row


def _exact(run: br.TargetRun, model: str, mode: str | None, j: int | None = None) -> float | None:
    """Median exact instructions (QEMU's te_count plugin, results' "instructions") of a path or of segment j of
    the chained runs; None when the results hold only ticks."""
    vals = []
    for r in run.lines:
        m = str(r.get("mode", ""))
        if br.model_of(r, run.summary) != model or not isinstance(r.get("instructions"), list):
            continue
        runs = r.get("runs") or 1
        if j is None and m == mode:
            vals.append((sum(r["instructions"]) + (r.get("decision_instructions") or 0)) / runs)
        elif j is not None and m.startswith("segment:") and j < len(r["instructions"]):
            vals.append(r["instructions"][j] / runs)
    return float(np.median(vals)) if vals else None


def _measured(run, timing, model: str, mode: str | None, j: int | None = None, scale: float = 1.0) -> float | None:
    """Median of a path or segment in the profile's unit (`scale`: seconds -> microseconds for a wall-clock
    profile)."""
    exact = _exact(run, model, mode, j) if timing.unit == "instructions" else None
    if exact is not None:
        return exact
    vals = br.segment_latencies(run, timing, model, j) if j is not None else br.path_latencies(run, timing, model, mode)
    med = br.stats(vals)["median"]
    return None if med is None else med * scale


def _scale(profile: dict, timing) -> float:
    return 1e6 if fit_key(profile) == "us" and timing.unit == "s" else 1.0


def _exit_measured(run, timing, model: str, k: int, scale: float) -> float | None:
    """Median of the early-exit runs that left at exit k (segments and exit tests), in the profile's unit."""
    lines = [r for r in br.mode_lines(run, model, "early_exit") if r.get("exit") == k]
    if timing.unit == "instructions" and lines and all(isinstance(r.get("instructions"), list) for r in lines):
        return float(np.median([(sum(r["instructions"]) + (r.get("decision_instructions") or 0)) / (r.get("runs") or 1)
                                for r in lines]))
    med = br.stats([v for r in lines if (v := br.line_latency(r, timing, run)) is not None])["median"]
    return None if med is None else med * scale


def exit_path(man: dict, segs: list[list[dict]], k: int) -> tuple[list[dict], int]:
    """(layers, exit tests) of an early-exit RUN that leaves at exit k: segments 0..k, and the exit test after each
    of them but the last segment of the model (the device runs none there)."""
    policy = (man.get("policy") or {}).get("name")
    last = len(segs) - 1
    n_dec = 0 if policy is None else (k + 1 if k < last else last)
    tests = [decision_layer(policy, _n_logits(man, j)) for j in range(n_dec)]
    return [x for s in segs[:k + 1] for x in s] + tests, n_dec


def _n_logits(man: dict, j: int) -> int:
    out = next((o for o in man["segments"][j].get("outputs") or [] if o.get("name") == "logits"), None)
    return int(np.prod(out["shape"])) if out and out.get("shape") else 0


def exit_path_predictions(run_dir: Path, model: str, man: dict, profile: dict) -> list[float] | None:
    """Predicted cost of an early-exit RUN leaving at each exit (for the threshold sweep), or None."""
    table = _layer_table(run_dir, model)
    if table is None or not man.get("policy"):
        return None
    fit = profile["fit"][fit_key(profile)]
    out = []
    for k in range(len(table["segments"])):
        layers, n_dec = exit_path(man, table["segments"], k)
        out.append(predict_layers(profile, layers, calls=k + 1, cold=layers, cold_share=BENCH_COLD_SHARE)["value"]
                   + n_dec * fit.get("decision_overhead", 0.0))
    return out


def predict_run(run_dir: Path, run: br.TargetRun, timing: br.Timing, manifests: dict, profile: dict) -> list[dict]:
    """Measured vs predicted vs MAC-only for every segment, chain, monolithic model and early-exit path benched in
    `run`.  Wall clock: every bench RUN may start cold (`cold=` its layers, BENCH_COLD_SHARE): between two RUNs of
    one mode a bench runs the other modes and records each result while the agent waits (docs/latency.md).  A
    profile without cold columns (QEMU) ignores it."""
    mac_coef = mac_only(profile)
    sc = _scale(profile, timing)
    rows = []
    for model, man in manifests.items():
        table = _layer_table(run_dir, model)
        if table is None:
            continue
        segs = table["segments"]
        for j, layers in enumerate(segs):
            st = _measured(run, timing, model, None, j, scale=sc)
            if st is not None:  # from chained runs: segment 0 starts the RUN, a later one follows in it
                rows.append(_row(f"{model} segment {j}", "segment", layers, man["segments"][j]["macs"], st, profile,
                                 mac_coef, first=j == 0, cold=layers))
        for k in range(1, len(segs)):
            st = _measured(run, timing, model, f"segment:{k}", scale=sc)
            if st is not None:
                layers = [x for s in segs[:k + 1] for x in s]
                macs = sum(s["macs"] for s in man["segments"][:k + 1])
                rows.append(_row(f"{model} chain 0..{k}", "chain", layers, macs, st, profile, mac_coef, k + 1,
                                 cold=layers))
        for mode, (mac_key, _, suffix) in br.MONOLITHIC.items():
            st = _measured(run, timing, model, mode, scale=sc)
            if st is not None and table.get(suffix) and man.get(mac_key):
                rows.append(_row(f"{model} {mode}", "monolithic", table[suffix], man[mac_key], st, profile, mac_coef,
                                 cold=table[suffix]))
        for k in range(len(segs) if man.get("policy") else 0):
            st = _exit_measured(run, timing, model, k, sc)
            if st is not None:
                layers, n_dec = exit_path(man, segs, k)
                macs = sum(s["macs"] for s in man["segments"][:k + 1])
                rows.append(_row(f"{model} early exit at {k}", "early_exit", layers, macs, st, profile, mac_coef,
                                 k + 1, decisions=n_dec, cold=layers))
    return rows


def layer_rows(run_dir: Path, model: str, profile: dict, kernels: str = "arm_dsp") -> list[dict]:
    """Per layer: the firmware's own per-layer profile (profile.json, selftest under QEMU) vs the prediction."""
    table = _layer_table(run_dir, model)
    path = Path(run_dir) / "firmware" / model / f"mps2-an386-{kernels}" / "profile.json"
    if table is None or not path.is_file() or fit_key(profile) != "instructions":
        return []
    measured = {row["name"]: row["instructions"] for row in json.loads(path.read_text()).get("per_layer", [])}
    fit = profile["fit"]["instructions"]
    out = []
    for k, layers in enumerate(table["segments"]):
        for layer in layers:
            name = f"seg{k}/{layer['name']}"
            pred = predict_layers(profile, [layer])["value"] - fit["overhead"]
            m = measured.get(name)
            out.append({"name": name, "kind": layer["kind"], "macs": layer.get("macs", 0), "measured": m,
                        "predicted": pred, "rel_error": (pred - m) / m if m else None})
    return out


def summary(rows: list[dict], key: str = "rel_error") -> dict:
    errs = np.abs([r[key] for r in rows if r.get(key) is not None])
    if errs.size == 0:
        return {"n": 0, "max_abs_error": None, "median_abs_error": None, "within_3pct": None, "within_10pct": None}
    return {"n": int(errs.size), "max_abs_error": float(errs.max()), "median_abs_error": float(np.median(errs)),
            "within_3pct": float(np.mean(errs <= 0.03)), "within_10pct": float(np.mean(errs <= 0.10))}


def kernel_table(profile: dict) -> list[dict]:
    """Per kernel kind: coefficients, sweep points and the sweep's in-sample and held-out errors."""
    fit = profile["fit"][fit_key(profile)]
    fs = profile["fit"].get("feature_set", "arm_dsp")
    held: dict = {}
    for p in profile["sweep"]["points"]:
        if p.get("held_out_error") is not None:
            held.setdefault(layer_family(main_layer(p), fs), []).append(abs(p["held_out_error"]))
    out = []
    for kind, coef in sorted(fit["kernels"].items()):
        h = held.get(kind, [])
        out.append({"kind": kind, "coefficients": {f: c for f, c in coef.items() if c},
                    "sweep_points": (fit["per_kind"].get(kind) or {}).get("n", 0),
                    "in_sample_max_abs_error": (fit["per_kind"].get(kind) or {}).get("max_abs_error"),
                    "held_out_max_abs_error": max(h) if h else None,
                    "held_out_median_abs_error": float(np.median(h)) if h else None})
    return out


def no_profile(target: str) -> dict:
    """The report's `latency_model` of a target without a device profile: no prediction, and how to make one.
    `target`: the bench's target spec (qemu, agent, a serial URL) or its directory name."""
    spec = "qemu" if target.startswith("qemu") else "agent" if target.startswith(("agent", "host-agent")) else target
    return {"source": None, "status": f"no device profile: run tinyexit profile-device --target {spec} --run RUN",
            "points": 0, "predictions": [], "loo_max_abs_error": None, "out_of_model": summary([]),
            "kernels": [], "out_of_range": [], "unknown_kinds": [], "exit_paths": {}}


def profile_latency_model(run_dir: Path, sources, profile: dict, profile_path: Path) -> dict:
    """The report's `latency_model` from a device profile (out-of-model everywhere)."""
    rows = [r for run, timing, manifests in sources for r in predict_run(run_dir, run, timing, manifests, profile)]
    models = sorted({m for _, _, manifests in sources for m in manifests})
    exit_paths = {m: exit_path_predictions(run_dir, m, man, profile)
                  for _, _, manifests in sources for m, man in manifests.items()}
    layers = [r for m in models for r in layer_rows(run_dir, m, profile)]
    s, mac = summary(rows), summary(rows, "mac_only_rel_error")
    return {"source": "profile", "unit": fit_key(profile), "profile_firmware_matches": _firmware_matches(run_dir, models, profile), "profile": str(profile_path), "profile_device": profile.get("device"),
            "config": {"feature": "kernel-level device profile"}, "points": len(rows),
            "status": (f"kernel-level prediction from {profile_path.name} (fitted on {len(profile['sweep']['points'])} "
                       "sweep models; these bundles never used in fitting)"),
            "mac_only": mac, "by_path_kind": {k: summary([r for r in rows if r["kind"] == k])
                                               for k in dict.fromkeys(r["kind"] for r in rows)},
            "exit_paths": {m: v for m, v in exit_paths.items() if v},
            "overheads": {k: profile["fit"][fit_key(profile)].get(k) for k in ("overhead", "run_overhead",
                                                                                "decision_overhead", "switch_overhead")
                          if profile["fit"][fit_key(profile)].get(k) is not None},
            "bench_cold_share": BENCH_COLD_SHARE if profile["fit"][fit_key(profile)].get("cold") else None,
            "loo_max_abs_error": s["max_abs_error"], "out_of_model": s, "predictions": rows, "layers": layers,
            "layer_errors": summary(layers), "kernels": kernel_table(profile),
            "sweep_held_out": profile.get("held_out"), "profile_timing": profile.get("timing"),
            "out_of_range": sorted({f for r in rows for f in r["out_of_range"]}),
            "unknown_kinds": sorted({k for r in rows for k in r["unknown_kinds"]}),
            "never_negative": all(r["predicted"] >= 0 for r in rows + layers if r.get("predicted") is not None)}


def _firmware_matches(run_dir: Path, models: list[str], profile: dict) -> bool | None:
    """Was the profile measured on the same firmware sources (kernels) as the run's firmware builds?"""
    shas = set()
    for m in models:
        for fw in (Path(run_dir) / "firmware" / m).glob("mps2-an386-*/firmware.json"):
            shas.add(json.loads(fw.read_text()).get("firmware_sources_sha256"))
    if not shas or profile.get("firmware_sources_sha256") is None:
        return None
    return shas == {profile["firmware_sources_sha256"]}


def markdown(lm: dict, unit: str) -> str:
    """The profile's tables: per-kernel fit, then measured vs predicted vs MAC-only for every path."""
    def pct(v):
        return "n/a" if v is None else f"{100 * v:+.2f} %"

    def apct(v):  # an absolute error
        return "n/a" if v is None else f"{100 * v:.2f} %"

    s, mac = lm["out_of_model"], lm["mac_only"]
    unit = "us" if lm.get("unit") == "us" else unit  # a wall-clock profile prices microseconds
    nd = 1 if unit == "us" else 0
    lines = ["### Predicted from the device profile (out of model)", "",
             f"{lm['status']}. Max |error| {apct(s['max_abs_error'])}, median {apct(s['median_abs_error'])}, "
             f"{100 * (s['within_3pct'] or 0):.0f} % of paths within 3 %, {100 * (s['within_10pct'] or 0):.0f} % "
             f"within 10 %; by path kind: " + "; ".join(
                 f"{k} max {apct(v['max_abs_error'])} (n={v['n']})" for k, v in (lm.get("by_path_kind") or {}).items())
             + f". Overheads: {_overheads(lm)}. MAC-only (per MAC + constant, same sweep): "
             f"max {apct(mac['max_abs_error'])}. Out-of-range features: {', '.join(lm['out_of_range']) or 'none'}; "
             f"kinds the sweep never measured: {', '.join(lm['unknown_kinds']) or 'none'}; profile measured on the "
             f"run's firmware sources: {lm.get('profile_firmware_matches')}.", "",
             f"| path | MACs | measured ({unit}) | predicted | error | MAC-only error | largest kernels |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for r in lm["predictions"]:
        top = ", ".join(f"{k} {v:,.{nd}f}" for k, v in sorted(r["by_kind"].items(), key=lambda kv: -kv[1])[:3])
        lines.append(f"| {r['name']} | {r['macs']:,.0f} | {r['measured']:,.{nd}f} | {r['predicted']:,.{nd}f} | "
                     f"{pct(r['rel_error'])} | {pct(r['mac_only_rel_error'])} | {top} |")
    lines += ["", "| kernel | sweep points | in-sample max | held-out max | held-out median | coefficients |",
              "|---|---:|---:|---:|---:|---|"]
    for k in lm["kernels"]:
        co = ", ".join(f"{f} {c:.3g}" for f, c in k["coefficients"].items())
        lines.append(f"| {k['kind']} | {k['sweep_points']} | {pct(k['in_sample_max_abs_error'])} | "
                     f"{pct(k['held_out_max_abs_error'])} | {pct(k['held_out_median_abs_error'])} | {co} |")
    return "\n".join(lines) + "\n"


def _overheads(lm: dict) -> str:
    o = lm.get("overheads") or {}
    return ", ".join(f"{k} {v:,.3g}" for k, v in o.items()) or "n/a"


def profile_mislead_notes(lm: dict, threshold: float = 0.10) -> list[str]:
    """Where the MAC count misleads, explained by the profile's kernels (not by a fit on the same points)."""
    if lm.get("source") != "profile":
        return []
    notes = []
    for r in lm["predictions"]:
        err = r.get("mac_only_rel_error")
        if err is None or abs(err) <= threshold or not r["by_kind"]:
            continue
        total = sum(r["by_kind"].values()) or 1
        parts = ", ".join(f"{k} {100 * v / total:.0f} %" for k, v in sorted(r["by_kind"].items(),
                                                                          key=lambda kv: -kv[1])[:3])
        notes.append(f"{r['name']}: MAC-only prediction off by {100 * err:+.0f} %; the profile's kernels put its "
                     f"cost in {parts} (kernels cost different instructions per MAC, and add/mean/pad cost "
                     "instructions without MACs)")
    return notes


def predict_sweep(rows: list[dict], lm: dict, model: str, reference: float | None) -> None:
    """Threshold-sweep rows gain the profile's expected latency: exit fractions x the predicted early-exit path of
    each exit (its segments and the exit tests it runs).  `reference` is in the report's unit (seconds for a
    wall-clock target, whose profile prices microseconds)."""
    paths = (lm.get("exit_paths") or {}).get(model) or []
    ref = reference * (1e6 if lm.get("unit") == "us" else 1.0) if reference else None
    for row in rows:
        frac = row.get("exit_fractions") or []
        if len(frac) != len(paths) or any(p is None for p in paths):
            continue
        value = float(np.dot(frac, paths))
        row["latency_predicted"] = value
        row["latency_predicted_ratio"] = value / ref if ref else None
