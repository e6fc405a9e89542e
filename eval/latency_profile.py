"""Latency predicted from a device profile: every layer, segment, chain and monolithic model of a bundle.

The profile (`tinyexit profile-device`, RUN/profiles/<target>.json) was fitted on a
microbenchmark sweep only, so every figure here is out of model: the bundles were
never used in fitting.  Each bundle's c/layers.json (written by profile-device) gives
the features of the layers the firmware runs; `eval.kernel_model.predict_layers`
prices them.  Beside each prediction: the measured median and a MAC-only prediction
(instructions per MAC and a constant, fitted on the same sweep), so a reader sees
what the kernel model buys, and the kernel kinds that hold the difference.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tinyexit.eval import bench_results as br
from tinyexit.eval.kernel_model import fit_key, predict_layers


def find_profile(run_dir: Path, target: str, unit: str) -> tuple[dict | None, Path | None]:
    """RUN/profiles/<target>.json (target: "qemu", "host-agent", ...) when it measures in `unit`."""
    names = [target, target.split("-")[0]]
    for name in names:
        path = Path(run_dir) / "profiles" / f"{name}.json"
        if path.is_file():
            prof = json.loads(path.read_text())
            if prof.get("unit") == unit:
                return prof, path
    return None, None


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


def _row(name: str, kind: str, layers: list[dict], macs: float, measured, profile: dict, mac_coef, n_calls=1):
    pred = predict_layers(profile, layers)
    value = pred["value"] + (n_calls - 1) * profile["fit"][fit_key(profile)]["overhead"]
    mac_pred = mac_coef[0] * macs + mac_coef[1] * n_calls
    row = {"name": name, "kind": kind, "macs": macs, "measured": measured, "predicted": value,
           "mac_only": mac_pred, "by_kind": {k: round(v) for k, v in pred["by_kind"].items()},
           "out_of_range": pred["out_of_range"], "unknown_kinds": pred["unknown_kinds"]}
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
            vals.append(sum(r["instructions"]) / runs)
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


def predict_run(run_dir: Path, run: br.TargetRun, timing: br.Timing, manifests: dict, profile: dict) -> list[dict]:
    """Measured vs predicted vs MAC-only for every segment, chain and monolithic model benched in `run`."""
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
            if st is not None:
                rows.append(_row(f"{model} segment {j}", "segment", layers, man["segments"][j]["macs"], st, profile,
                                 mac_coef))
        for k in range(1, len(segs)):
            st = _measured(run, timing, model, f"segment:{k}", scale=sc)
            if st is not None:
                layers = [x for s in segs[:k + 1] for x in s]
                macs = sum(s["macs"] for s in man["segments"][:k + 1])
                rows.append(_row(f"{model} chain 0..{k}", "chain", layers, macs, st, profile, mac_coef, k + 1))
        for mode, (mac_key, _, suffix) in br.MONOLITHIC.items():
            st = _measured(run, timing, model, mode, scale=sc)
            if st is not None and table.get(suffix) and man.get(mac_key):
                rows.append(_row(f"{model} {mode}", "monolithic", table[suffix], man[mac_key], st, profile, mac_coef))
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
    held: dict = {}
    for p in profile["sweep"]["points"]:
        if p.get("held_out_error") is not None:
            main = max(p["layers"], key=lambda x: (x["kind"] not in ("copy", "requant"), x.get("macs", 0)))["kind"]
            held.setdefault(main, []).append(abs(p["held_out_error"]))
    out = []
    for kind, coef in sorted(fit["kernels"].items()):
        h = held.get(kind, [])
        out.append({"kind": kind, "coefficients": {f: c for f, c in coef.items() if c},
                    "sweep_points": (fit["per_kind"].get(kind) or {}).get("n", 0),
                    "in_sample_max_abs_error": (fit["per_kind"].get(kind) or {}).get("max_abs_error"),
                    "held_out_max_abs_error": max(h) if h else None,
                    "held_out_median_abs_error": float(np.median(h)) if h else None})
    return out


def profile_latency_model(run_dir: Path, sources, profile: dict, profile_path: Path) -> dict:
    """The report's `latency_model` from a device profile (out-of-model everywhere)."""
    rows = [r for run, timing, manifests in sources for r in predict_run(run_dir, run, timing, manifests, profile)]
    models = sorted({m for _, _, manifests in sources for m in manifests})
    layers = [r for m in models for r in layer_rows(run_dir, m, profile)]
    s, mac = summary(rows), summary(rows, "mac_only_rel_error")
    return {"source": "profile", "unit": fit_key(profile), "profile_firmware_matches": _firmware_matches(run_dir, models, profile), "profile": str(profile_path), "profile_device": profile.get("device"),
            "config": {"feature": "kernel-level device profile"}, "points": len(rows),
            "status": (f"kernel-level prediction from {profile_path.name} (fitted on {len(profile['sweep']['points'])} "
                       "single-operator models; these bundles never used in fitting)"),
            "coefficients": None, "loo": [], "paths": [], "mac_only": {"loo": [], "paths": [], **mac},
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

    s, mac = lm["out_of_model"], lm["mac_only"]
    unit = "us" if lm.get("unit") == "us" else unit  # a wall-clock profile prices microseconds
    nd = 1 if unit == "us" else 0
    lines = ["### Predicted from the device profile (out of model)", "",
             f"{lm['status']}. Max |error| {pct(s['max_abs_error'])}, median {pct(s['median_abs_error'])}, "
             f"{100 * (s['within_3pct'] or 0):.0f} % of paths within 3 %; MAC-only (per MAC + constant, same sweep): "
             f"max {pct(mac['max_abs_error'])}. Out-of-range features: {', '.join(lm['out_of_range']) or 'none'}; "
             f"kinds the sweep never measured: {', '.join(lm['unknown_kinds']) or 'none'}; profile measured on the "
             f"run's firmware sources: {lm.get('profile_firmware_matches')}.", "",
             f"| path | MACs | measured ({unit}) | predicted | error | MAC-only error | largest kernels |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for r in lm["predictions"]:
        top = ", ".join(f"{k} {v:,}" for k, v in sorted(r["by_kind"].items(), key=lambda kv: -kv[1])[:3])
        lines.append(f"| {r['name']} | {r['macs']:,.0f} | {r['measured']:,.{nd}f} | {r['predicted']:,.{nd}f} | "
                     f"{pct(r['rel_error'])} | {pct(r['mac_only_rel_error'])} | {top} |")
    lines += ["", "| kernel | sweep points | in-sample max | held-out max | held-out median | coefficients |",
              "|---|---:|---:|---:|---:|---|"]
    for k in lm["kernels"]:
        co = ", ".join(f"{f} {c:.3g}" for f, c in k["coefficients"].items())
        lines.append(f"| {k['kind']} | {k['sweep_points']} | {pct(k['in_sample_max_abs_error'])} | "
                     f"{pct(k['held_out_max_abs_error'])} | {pct(k['held_out_median_abs_error'])} | {co} |")
    return "\n".join(lines) + "\n"


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
    """Threshold-sweep rows gain the profile's expected latency: exit fractions x predicted path (segments 0..k;
    the exit tests themselves are not in the profile)."""
    preds = {r["name"]: r["predicted"] for r in lm["predictions"]}
    paths = [preds.get(f"{model} segment 0")]
    k = 1
    while f"{model} chain 0..{k}" in preds:
        paths.append(preds[f"{model} chain 0..{k}"])
        k += 1
    for row in rows:
        frac = row.get("exit_fractions") or []
        if len(frac) != len(paths) or any(p is None for p in paths):
            continue
        value = float(np.dot(frac, paths))
        row["latency_predicted"] = value
        row["latency_predicted_ratio"] = value / reference if reference else None
