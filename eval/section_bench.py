"""Report section "bench": measured cost on each target vs the manifest's analytic MACs.

One sub-dict per RUN/bench/<target>/ (see docs/artifacts.md).  Latencies and
agreement are **measured** on the device; MACs are **analytic** (the manifest);
energy is rendered from summary.json, measured when a meter recorded it and
otherwise **modelled** by the harness from a named profile, labelled either way.
Every figure summary.json holds is taken from it (bench_figures.py).  Reads
artifacts only: nothing here talks to a device.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from tinyexit.bundle import load_bundle
from tinyexit.errors import UserError
from tinyexit.eval import bench_results as br
from tinyexit.eval.bench_figures import apply_energy, apply_figures
from tinyexit.eval.bench_markdown import markdown, mislead_notes, plots
from tinyexit.eval.latency_profile import (find_profile, no_profile, predict_sweep, profile_latency_model,
                                          profile_mislead_notes)
from tinyexit.eval.latency_profile import markdown as profile_markdown
from tinyexit.eval.report import Section
from tinyexit.rundir import read_json

ORDER = 40
LINK_KEYS = ("frames", "retries", "crc_errors", "resyncs", "timeouts")


def build(run_dir: Path, report_dir: Path) -> Section | None:
    bench = Path(run_dir) / "bench"
    dirs = sorted(d for d in bench.iterdir() if (d / "results.jsonl").is_file()) if bench.is_dir() else []
    runs = [r for r in (br.load_target(d) for d in dirs) if r.lines]
    if not runs:
        return None
    data, parts, files = {}, [], []
    for run in runs:
        companions = [o for o in runs if o is not run and _target_key(o) == _target_key(run)
                      and not set(o.models) & set(run.models)]
        t = bench_target(Path(run_dir), run, companions=companions)
        pngs = plots(report_dir, run.name, t)
        data[run.name] = t
        files += pngs
        parts.append(markdown(run.name, t, pngs))
        if t["latency_model"].get("source") == "profile":
            parts.append(profile_markdown(t["latency_model"], t["latency_unit"]))
    return Section("bench", data, "\n".join(parts), files)


def _target_key(run: br.TargetRun) -> tuple:
    """Bench directories measured on the same device and runtime (e.g. the classifier and the
    denoiser benched on one target) share one latency model."""
    s = run.summary
    devs = s.get("devices") or []
    specs = tuple(sorted(str(d.get("spec")) for d in devs if isinstance(d, dict)))
    runtimes = tuple(sorted({str((d.get("info") or {}).get("runtime")) for d in devs if isinstance(d, dict)}))
    return (specs, runtimes, str(s.get("device"))) if specs else (run.name,)


def load_manifest(run_dir: Path, model: str) -> dict:
    """The bundle's manifest, read and checked by the one bundle loader (tinyexit.bundle)."""
    d = run_dir / "export" / model
    if not (d / "manifest.json").is_file():
        raise UserError(f"{d / 'manifest.json'}: missing but bench results name model '{model}'; "
                        f"run 'tinyexit export {run_dir}'")
    bundle = load_bundle(d)
    return bundle.manifest | {"full_macs": bundle.full_macs}


def bench_target(run_dir: Path, run: br.TargetRun, companions: list[br.TargetRun] = ()) -> dict:
    timing = br.timing_of(run)
    manifests = {m: load_manifest(run_dir, m) for m in run.models}
    primary = "classifier" if "classifier" in manifests else run.models[0]
    man = manifests[primary]
    s = run.summary
    out = {"device": _device_name(s), "device_info": s.get("device") if isinstance(s.get("device"), dict) else None,
           "simulated_or_real": s.get("simulated_or_real") or _simulated_or_real(run),
           "model": primary, "models": run.models, "latency_unit": timing.unit,
           "deterministic": timing.deterministic, "tick_instructions": timing.instructions_per_tick,
           "discarded_torn_line": run.discarded_torn_line,
           # MACs come from the current manifest: results measured on an older export do not match them
           "artifact_matches_export": (s["artifact_hash"] == man.get("artifact_hash")
                                       if s.get("artifact_hash") and man.get("artifact_hash") else None)}
    ref_vals, ref_name = _reference(run, timing, primary, man)
    ref = br.stats(ref_vals)["median"]
    out["latency_reference"] = ref_name
    out["per_exit"] = [_exit_row(run, timing, man, primary, k, ref) for k in range(len(man.get("exits") or []))]
    out["early_exit"] = _early_exit(run, timing, man, primary, ref)
    out.update(_agreement(run, primary))
    out["samples"] = out["early_exit"]["samples"] or len({r.get("sample") for r in run.lines})
    out["segment_overhead"] = _segment_overhead(run, timing, primary, man)
    out["segment_overhead_detail"] = s.get("segment_overhead_detail")
    out["payload_efficiency"] = s.get("payload_efficiency", (s.get("link") or {}).get("payload_efficiency"))
    if s.get("places"):  # a bench over labgrid places: per-place and per-device-kind figures (docs/farm.md)
        out["places"] = s["places"]
    link = s.get("link") or {}
    out["link"] = {k: link.get(k, s.get(k)) for k in LINK_KEYS} | {
        k: v for k, v in link.items() if k not in LINK_KEYS}
    if timing.unit == "instructions":
        out.update(_qemu_fields(run_dir, run, primary, man, ref))
    # summary.json's figures win: the harness computed them once (bench_figures.py)
    apply_figures(out, s, timing.unit)
    apply_energy(out, s, len(man["segments"]))
    sources = [(run, timing, manifests)] + [
        (o, br.timing_of(o), {m: load_manifest(run_dir, m) for m in o.models}) for o in companions
        if br.timing_of(o).unit == timing.unit]
    out["latency_model_sources"] = [src[0].name for src in sources]
    out["segments"] = [row for src in sources for row in _segment_rows(*src)]
    # latency is predicted only from a device profile fitted on a microbenchmark sweep (docs/latency.md)
    profile, profile_path = find_profile(run_dir, run.name, timing.unit)
    out["latency_model"] = (profile_latency_model(run_dir, sources, profile, profile_path) if profile is not None
                            else no_profile(_target_spec(run)))
    errs = [abs(e["latency_ratio"] - e["mac_ratio"]) for e in out["per_exit"]
            if e["latency_ratio"] is not None and e["mac_ratio"] is not None]
    out["latency_model"]["mac_only_max_abs_ratio_error"] = max(errs) if errs else None
    out["sweep"] = _sweep(run_dir, man, out["per_exit"], ref) if primary == "classifier" else []
    if out["latency_model"].get("source") == "profile":
        predict_sweep(out["sweep"], out["latency_model"], primary, ref)
    out["where_macs_mislead"] = mislead_notes(out) + profile_mislead_notes(out["latency_model"])
    return out


def _device_name(s: dict) -> str | None:
    d = s.get("device")
    return (d.get("name") or d.get("device")) if isinstance(d, dict) else d


def _target_spec(run: br.TargetRun) -> str:
    specs = [str(d.get("spec")) for d in run.summary.get("devices") or [] if isinstance(d, dict) and d.get("spec")]
    return specs[0] if specs else run.name


def _simulated_or_real(run: br.TargetRun) -> str:
    specs = [str(d.get("spec")) for d in run.summary.get("devices") or [] if isinstance(d, dict)]
    target = specs[0] if specs else run.name
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


def _exit_row(run, timing, man, model, k, ref) -> dict:
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
    row = {"exit": k, "macs": ex["cumulative_macs"], "mac_ratio": mac_ratio,
           "latency_median": st["median"], "latency_p90": st["p90"], "latency_n": st["n"],
           "latency_unit": timing.unit, "latency_source": source, "latency_ratio": ratio,
           "ratio_rel_difference": (ratio - mac_ratio) / mac_ratio if ratio is not None and mac_ratio else None,
           "early_exit_latency_median": br.stats(early_lat)["median"], "segments_timed": k + 1,
           "energy_j": None, "energy_ratio": None, "energy_kind": None, "energy_source": None,   # apply_energy
           "agreement_top1": br.fraction(r.get("host_top1") == r.get("top1") if "host_top1" in r else None
                                         for r in br.first_per_sample(early))}
    if timing.unit == "instructions" and st["median"] is not None:
        row["instructions_per_mac"] = st["median"] / ex["cumulative_macs"]
    return row


def _early_exit(run, timing, man, model, ref) -> dict:
    all_lines = br.mode_lines(run, model, "early_exit")
    lines = br.first_per_sample(all_lines)
    if not lines:
        return {"samples": 0, "accuracy": None, "mac_ratio": None, "latency_ratio": None, "exit_fractions": None}
    cum = np.array([e["cumulative_macs"] for e in man["exits"]], dtype=np.float64)
    exits = np.array([int(r["exit"]) for r in lines])
    labelled = [r for r in lines if r.get("label") is not None]
    per_sample = br.per_sample_latency(run, timing, all_lines)
    mean_lat = float(np.mean(list(per_sample.values()))) if per_sample else None
    # Expected latency = sum over exits of (share leaving there) x (median latency of the early-exit runs
    # that left there, exit tests included): a mean over samples that a few preempted runs cannot move.
    frac = np.bincount(exits, minlength=len(cum)) / len(exits)
    medians = [br.stats([v for r in all_lines if r.get("exit") == k
                         if (v := br.line_latency(r, timing, run)) is not None])["median"] for k in range(len(cum))]
    expected = sum(f * m for f, m in zip(frac, medians) if f > 0) if all(
        m is not None for f, m in zip(frac, medians) if f > 0) else None
    decision = [br.line_latency(r | {"ticks": [0]}, timing, run) for r in all_lines if r.get("ticks")]
    return {"samples": len(lines),
            "accuracy": br.fraction(r["top1"] == r["label"] for r in labelled) if labelled else None,
            "mac_ratio": float(cum[exits].mean() / man["full_macs"]),
            "latency_mean": mean_lat, "latency_expected": expected, "latency_unit": timing.unit,
            "latency_ratio": expected / ref if expected is not None and ref else None,
            "latency_mean_ratio": mean_lat / ref if mean_lat is not None and ref else None,
            "decision_latency_mean": float(np.mean(decision)) if decision else None,
            "exit_fractions": frac.tolist(),
            "policy": run.summary.get("policy") or man.get("policy")}


def _agreement(run, model: str) -> dict:
    lines = br.first_per_sample(br.mode_lines(run, model, "early_exit")) or run.lines
    return {"agreement_top1": br.fraction(r["top1"] == r["host_top1"] if "host_top1" in r else None for r in lines),
            "agreement_exit": br.fraction(r["exit"] == r["host_exit"] if "host_exit" in r else None for r in lines),
            "logits_equal": br.fraction(r.get("host_logits_equal") for r in lines)}


def _segment_overhead(run, timing, model: str, man: dict) -> float | None:
    """(all segments chained - monolithic) / monolithic: the harness's paired figure when it has one,
    else from medians, against the all-exits model (the pure cost of splitting) when it was run."""
    if run.summary.get("segment_overhead") is not None:
        return run.summary["segment_overhead"]
    chain = br.stats(br.path_latencies(run, timing, model, f"segment:{len(man['segments']) - 1}"))["median"]
    for mode in ("full:all_exits", "full"):
        mono = br.stats(br.path_latencies(run, timing, model, mode))["median"]
        if mono and chain is not None:
            return chain / mono - 1.0
    return None


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
                         "latency_median": st["median"], "latency_p90": st["p90"], "latency_n": st["n"],
                         "bench": run.name})
    return rows


def _sweep(run_dir: Path, man: dict, per_exit: list[dict], ref) -> list[dict]:
    """Threshold sweep on the test split's per-exit logits, costed with measured path latencies."""
    from tinyexit.eval import study
    from tinyexit.exit_policy import ExitPolicy

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


def _qemu_fields(run_dir: Path, run: br.TargetRun, model: str, man: dict, ref) -> dict:
    """Instructions per MAC of the benched path, and per-layer counts: from the bench summary when it
    carries them, else from `tinyexit firmware profile`'s profile.json of the kernels the device ran."""
    s = run.summary
    profiles = {}
    for path in sorted((run_dir / "firmware" / model).glob("*/profile.json")):
        try:
            prof = read_json(path)
        except UserError:
            continue
        profiles[str(prof.get("kernels", path.parent.name))] = (path, prof)
    names = [str((d.get("info") or {}).get("runtime_name", "")) for d in s.get("devices") or [] if isinstance(d, dict)]
    kernels = next((n.split()[-1] for n in names if n.split() and n.split()[-1] in profiles), None)
    layers, source = s.get("per_layer"), "bench summary.json" if s.get("per_layer") else None
    if not layers and profiles:
        kernels = kernels or ("arm_dsp" if "arm_dsp" in profiles else next(iter(profiles)))
        layers, source = profiles[kernels][1].get("per_layer"), str(profiles[kernels][0].relative_to(run_dir))
    rows = []
    for row in layers or []:
        row = dict(row)
        row.setdefault("op", str(row.get("name", "")).rpartition(":")[2] or None)
        if row.get("instructions") is not None and row.get("macs"):
            row["instructions_per_mac"] = row["instructions"] / row["macs"]
        rows.append(row)
    return {"instructions_per_mac": ref / man["full_macs"] if ref else None,
            "per_layer": rows or None, "per_layer_source": source, "per_layer_kernels": kernels,
            "instructions_per_mac_by_kernels": {k: p.get("instructions_per_mac") for k, (_, p) in profiles.items()}}
