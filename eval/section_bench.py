"""Report section "bench": measured cost on each target vs the manifest's analytic MACs.

One sub-dict per RUN/bench/<target>/ (see docs/artifacts.md).  Latencies and
agreement are **measured** on the device; MACs are **analytic** (the manifest);
energy is measured when a meter recorded it and otherwise **modelled** from a
profile (eval/energy.py), labelled either way.  Reads artifacts only: nothing
here talks to a device.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from tinyexit.errors import UserError
from tinyexit.eval import bench_results as br
from tinyexit.eval.bench_markdown import markdown, mislead_notes, plots
from tinyexit.eval.energy import path_energy, profile_for
from tinyexit.eval.latency_model import LatencyModelConfig, Path as ChainPath, Point, fit_latency_model, full_rank
from tinyexit.eval.report import Section
from tinyexit.rundir import read_json

ORDER = 40
LINK_KEYS = ("frames", "retries", "crc_errors", "resyncs", "timeouts")


def build(run_dir: Path, report_dir: Path) -> Section | None:
    bench = Path(run_dir) / "bench"
    dirs = sorted(d for d in bench.iterdir() if (d / "results.jsonl").is_file()) if bench.is_dir() else []
    if not dirs:
        return None
    data, parts, files = {}, [], []
    for d in dirs:
        run = br.load_target(d)
        if not run.lines:
            continue
        t = bench_target(Path(run_dir), run)
        pngs = plots(report_dir, run.name, t)
        data[run.name] = t
        files += pngs
        parts.append(markdown(run.name, t, pngs))
    if not data:
        return None
    return Section("bench", data, "\n".join(parts), files)


def load_manifest(run_dir: Path, model: str) -> dict:
    path = run_dir / "export" / model / "manifest.json"
    if not path.is_file():
        raise UserError(f"{path}: missing but bench results name model '{model}'; run 'tinyexit export {run_dir}'")
    m = read_json(path)
    if not m.get("segments") or not m.get("full_macs"):
        raise UserError(f"{path}: no segments/full_macs; re-run 'tinyexit export {run_dir}'")
    return m


def bench_target(run_dir: Path, run: br.TargetRun, cfg: LatencyModelConfig = LatencyModelConfig()) -> dict:
    timing = br.timing_of(run)
    manifests = {m: load_manifest(run_dir, m) for m in run.models}
    primary = "classifier" if "classifier" in manifests else run.models[0]
    man = manifests[primary]
    s = run.summary
    out = {"device": _device_name(s), "device_info": s.get("device") if isinstance(s.get("device"), dict) else None,
           "simulated_or_real": s.get("simulated_or_real") or _simulated_or_real(run.name),
           "model": primary, "models": run.models, "latency_unit": timing.unit,
           "deterministic": timing.deterministic, "tick_instructions": timing.instructions_per_tick,
           "discarded_torn_line": run.discarded_torn_line}
    ref_vals, ref_name = _reference(run, timing, primary, man)
    ref = br.stats(ref_vals)["median"]
    out["latency_reference"] = ref_name
    profile = profile_for(s, timing.unit)
    meter = s.get("power") if isinstance(s.get("power"), str) else None
    ref_energy = path_energy(_energies(run, primary, "full"), ref, timing.unit, profile, meter)
    out["per_exit"] = [_exit_row(run, timing, man, primary, k, ref, ref_energy, profile, meter)
                       for k in range(len(man.get("exits") or []))]
    out["early_exit"] = _early_exit(run, timing, man, primary, ref, out["per_exit"])
    out.update(_agreement(run, primary))
    out["samples"] = out["early_exit"]["samples"] or len({r.get("sample") for r in run.lines})
    out["segment_overhead"] = _segment_overhead(run, timing, primary, man)
    out["payload_efficiency"] = s.get("payload_efficiency", (s.get("link") or {}).get("payload_efficiency"))
    link = s.get("link") or {}
    out["link"] = {k: link.get(k, s.get(k)) for k in LINK_KEYS} | {
        k: v for k, v in link.items() if k not in LINK_KEYS}
    out["energy_profile"] = profile.to_dict()
    out["segments"] = _segment_rows(run, timing, manifests)
    points, paths = _model_inputs(run_dir, run, timing, manifests, out["segments"], "ops")
    if cfg.feature == "bytes" or (cfg.feature == "auto" and not full_rank(points)):
        cfg = replace(cfg, feature="bytes")
        points, paths = _model_inputs(run_dir, run, timing, manifests, out["segments"], "bytes")
    else:
        cfg = replace(cfg, feature="ops")
    lm = fit_latency_model(points, paths, cfg, timing.unit)
    errs = [abs(e["latency_ratio"] - e["mac_ratio"]) for e in out["per_exit"]
            if e["latency_ratio"] is not None and e["mac_ratio"] is not None]
    lm["mac_only_max_abs_ratio_error"] = max(errs) if errs else None
    out["latency_model"] = lm
    out["sweep"] = _sweep(run_dir, man, out["per_exit"], ref) if primary == "classifier" else []
    if timing.unit == "instructions":
        out.update(_qemu_fields(s, man, ref))
    out["where_macs_mislead"] = mislead_notes(out)
    return out


def _device_name(s: dict) -> str | None:
    d = s.get("device")
    return (d.get("name") or d.get("device")) if isinstance(d, dict) else d


def _simulated_or_real(target: str) -> str:
    if target.startswith("qemu"):
        return "simulated (QEMU mps2-an386, instruction counts)"
    if target.startswith("agent"):
        return "host agent on this machine (not a device)"
    return "real device"


def _reference(run, timing, model: str, man: dict) -> tuple[list[float], str]:
    full = br.path_latencies(run, timing, model, "full")
    if full:
        return full, "monolithic full-depth model"
    last = len(man["segments"]) - 1
    return br.path_latencies(run, timing, model, f"segment:{last}"), "all segments chained (no monolithic run)"


def _energies(run, model: str, mode: str) -> list[float]:
    return [float(r["energy_j"]) for r in br.mode_lines(run, model, mode) if r.get("energy_j") is not None]


def _exit_row(run, timing, man, model, k, ref, ref_energy, profile, meter) -> dict:
    ex = man["exits"][k]
    lat = br.path_latencies(run, timing, model, f"segment:{k}")
    source = f"segment:{k} runs (segments 0..{k} chained)"
    early = [r for r in br.mode_lines(run, model, "early_exit") if r.get("exit") == k]
    early_lat = [v for v in (br.line_latency(r, timing, run) for r in early) if v is not None]
    if not lat:
        lat, source = early_lat, f"early-exit runs that left at exit {k}"
    st = br.stats(lat)
    mac_ratio = ex.get("mac_ratio", ex["cumulative_macs"] / man["full_macs"])
    ratio = st["median"] / ref if st["median"] is not None and ref else None
    en = path_energy(_energies(run, model, f"segment:{k}"), st["median"], timing.unit, profile, meter)
    e_ratio = en["energy_j"] / ref_energy["energy_j"] if en["energy_j"] and ref_energy["energy_j"] else None
    row = {"exit": k, "macs": ex["cumulative_macs"], "mac_ratio": mac_ratio,
           "latency_median": st["median"], "latency_p90": st["p90"], "latency_n": st["n"],
           "latency_unit": timing.unit, "latency_source": source, "latency_ratio": ratio,
           "ratio_rel_difference": (ratio - mac_ratio) / mac_ratio if ratio is not None and mac_ratio else None,
           "early_exit_latency_median": br.stats(early_lat)["median"], "segments_timed": k + 1,
           **en, "energy_ratio": e_ratio,
           "agreement_top1": br.fraction(r.get("host_top1") == r.get("top1") if "host_top1" in r else None
                                         for r in br.first_per_sample(early))}
    if timing.unit == "instructions" and st["median"] is not None:
        row["instructions_per_mac"] = st["median"] / ex["cumulative_macs"]
    return row


def _early_exit(run, timing, man, model, ref, per_exit) -> dict:
    all_lines = br.mode_lines(run, model, "early_exit")
    lines = br.first_per_sample(all_lines)
    if not lines:
        return {"samples": 0, "accuracy": None, "mac_ratio": None, "latency_ratio": None, "exit_fractions": None}
    cum = np.array([e["cumulative_macs"] for e in man["exits"]], dtype=np.float64)
    exits = np.array([int(r["exit"]) for r in lines])
    labelled = [r for r in lines if r.get("label") is not None]
    per_sample = br.per_sample_latency(run, timing, all_lines)
    mean_lat = float(np.mean(list(per_sample.values()))) if per_sample else None
    e = [p["energy_j"] for p in per_exit]
    return {"samples": len(lines),
            "accuracy": br.fraction(r["top1"] == r["label"] for r in labelled) if labelled else None,
            "mac_ratio": float(cum[exits].mean() / man["full_macs"]),
            "latency_mean": mean_lat, "latency_unit": timing.unit,
            "latency_ratio": mean_lat / ref if mean_lat is not None and ref else None,
            "energy_j": float(np.mean([e[x] for x in exits])) if all(v is not None for v in e) else None,
            "energy_kind": per_exit[0]["energy_kind"] if per_exit else None,
            "exit_fractions": (np.bincount(exits, minlength=len(cum)) / len(exits)).tolist(),
            "policy": run.summary.get("policy") or man.get("policy")}


def _agreement(run, model: str) -> dict:
    lines = br.first_per_sample(br.mode_lines(run, model, "early_exit")) or run.lines
    return {"agreement_top1": br.fraction(r["top1"] == r["host_top1"] if "host_top1" in r else None for r in lines),
            "agreement_exit": br.fraction(r["exit"] == r["host_exit"] if "host_exit" in r else None for r in lines),
            "logits_equal": br.fraction(r.get("host_logits_equal") for r in lines)}


def _segment_overhead(run, timing, model: str, man: dict) -> float | None:
    """(all segments chained - monolithic) / monolithic, both measured in this run."""
    full = br.stats(br.path_latencies(run, timing, model, "full"))["median"]
    chain = br.stats(br.path_latencies(run, timing, model, f"segment:{len(man['segments']) - 1}"))["median"]
    if full and chain is not None:
        return chain / full - 1.0
    return run.summary.get("segment_overhead")


def _segment_rows(run, timing, manifests: dict) -> list[dict]:
    rows = []
    for model, man in manifests.items():
        for j, seg in enumerate(man["segments"]):
            st = br.stats(br.segment_latencies(run, timing, model, j))
            ops = seg.get("ops") or []
            rows.append({"model": model, "segment": j, "macs": seg["macs"], "ops": br.segment_feature(seg, "ops"),
                         "bytes": br.segment_feature(seg, "bytes"),
                         "op_types": sorted({o.get("type", "?") for o in ops}),
                         "zero_mac_ops": sorted({o.get("type", "?") for o in ops if not o.get("macs")}),
                         "latency_median": st["median"], "latency_p90": st["p90"], "latency_n": st["n"]})
    return rows


def _model_inputs(run_dir: Path, run, timing, manifests: dict, seg_rows: list[dict], feature: str):
    points = [Point(f"{r['model']} segment {r['segment']}", "segment", r["macs"], r[feature], r["latency_median"])
              for r in seg_rows if r["latency_median"] is not None]
    paths = []
    for model, man in manifests.items():
        feats = [r[feature] for r in seg_rows if r["model"] == model]
        for k in range(len(man["segments"])):
            lat = br.stats(br.path_latencies(run, timing, model, f"segment:{k}"))["median"]
            if lat is not None and k > 0:   # k = 0 is segment 0 itself, already a point
                macs = sum(s["macs"] for s in man["segments"][:k + 1])
                paths.append(ChainPath(f"{model} segments 0..{k}", macs, sum(feats[:k + 1]), k + 1, lat))
        full = br.stats(br.path_latencies(run, timing, model, "full"))["median"]
        mono = br.monolithic_feature(man, feature, run_dir / "export" / model)
        if full is not None and mono is not None:
            points.append(Point(f"{model} monolithic", "monolithic", man["full_macs"], mono, full))
            paths.append(ChainPath(f"{model} monolithic", man["full_macs"], mono, 1, full))
    return points, paths


def _sweep(run_dir: Path, man: dict, per_exit: list[dict], ref) -> list[dict]:
    """Threshold sweep on the test split's per-exit logits, costed with measured path latencies."""
    from tinyexit.eval import study
    from tinyexit.models.exit_policy import ExitPolicy

    path = run_dir / "predictions" / "early_exit.npz"
    lat = [e["latency_median"] for e in per_exit]
    if not path.is_file() or not ref or any(v is None for v in lat):
        return []
    try:
        logits = np.load(path)["test_logits"]
    except (OSError, KeyError, ValueError):
        raise UserError(f"{path}: unreadable predictions; re-run 'tinyexit train early-exit'") from None
    if logits.shape[0] != len(per_exit):
        return []
    cum = np.array([e["macs"] for e in per_exit], dtype=np.float64)
    rows = []
    for name in ("max_softmax", "entropy"):
        for t in study.SWEEP[name]:
            frac = np.bincount(ExitPolicy(name, (t,)).exit_index(logits), minlength=len(cum)) / logits.shape[1]
            mac_ratio = float(frac @ cum / man["full_macs"])
            lat_ratio = float(frac @ np.array(lat) / ref)
            rows.append({"policy": name, "threshold": t, "exit_fractions": frac.tolist(), "mac_ratio": mac_ratio,
                         "latency_ratio": lat_ratio, "rel_difference": (lat_ratio - mac_ratio) / mac_ratio})
    return rows


def _qemu_fields(s: dict, man: dict, ref) -> dict:
    layers = []
    for row in s.get("per_layer") or []:
        row = dict(row)
        if row.get("instructions") is not None and row.get("macs"):
            row["instructions_per_mac"] = row["instructions"] / row["macs"]
        layers.append(row)
    return {"instructions_per_mac": ref / man["full_macs"] if ref else None, "per_layer": layers or None}
