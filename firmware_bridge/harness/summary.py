"""summary.json of a benchmark, computed from every line of results.jsonl (resumed runs included).

Latency of one result = (sum of its segment ticks + decision ticks) / runs / tick_hz.
Per-exit latency comes from the `segment:k` chains (median and p90 over samples
and repeats); the early-exit cost is a mean, because it is an expectation over
the test split.  Energy is modelled (labelled so) unless a power monitor measured it.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from tinyexit import __version__
from tinyexit.firmware_bridge.harness.energy import modelled_energy_j, profile_for


def latency_s(rec: dict) -> float:
    return (sum(rec["ticks"]) + rec.get("decision_ticks", 0)) / rec.get("runs", 1) / rec["tick_hz"]


def _stats(values: list[float]) -> dict | None:
    if not values:
        return None
    v = np.asarray(values, np.float64)
    return {"median_s": float(np.median(v)), "p90_s": float(np.percentile(v, 90)), "mean_s": float(v.mean()),
            "n": int(len(v))}


def _frac(flags: list[bool]) -> float | None:
    return round(float(np.mean(flags)), 6) if flags else None


def summarize(records: list[dict], art, ctx, workers, stats, wall_s: float, writer) -> dict:
    recs = [r for r in records if r.get("model", art.model) == art.model]
    by_mode = defaultdict(list)
    for r in recs:
        by_mode[r["mode"]].append(r)
    latency = {mode: _stats([latency_s(r) for r in rs]) for mode, rs in by_mode.items()}
    first = next((w for w in workers if w.info is not None), None)
    kind = first.target.kind if first and first.target else "url"
    info = first.info.to_dict() if first else {}
    profile = profile_for(kind, info.get("device", ""), info.get("runtime", ""))
    energy = _energy(profile, latency, workers)
    per_exit = _per_exit(art, by_mode, latency, profile, energy)
    link = stats.to_dict()
    summary = {
        "tinyexit_version": __version__, "target": writer.path.parent.name, "model": art.model,
        "artifact_hash": art.artifact_hash,
        "device": ", ".join(sorted({w.info.device for w in workers if w.info})) or None,
        "simulated_or_real": first.target.simulated_or_real if first else None,
        "devices": [_device(w) for w in workers],
        "samples": len({r["sample"] for r in recs}), "samples_requested": int(len(ctx.y)),
        "modes": list(ctx.modes), "repeats": ctx.cfg.repeats, "warmup": ctx.cfg.warmup,
        "counts": {mode: len(rs) for mode, rs in by_mode.items()},
        "policy": art.policy.to_dict() if art.policy else None,
        "accuracy": {mode: _frac([r["top1"] == r["label"] for r in rs if r.get("repeat", 0) == 0
                                  and r.get("label", -1) >= 0]) for mode, rs in by_mode.items()},
        "agreement": {mode: _agreement(rs) for mode, rs in by_mode.items()},
        "latency_unit": "s", "latency": latency,
        "per_segment": _per_segment(art, by_mode),
        "per_exit": per_exit,
        "early_exit": _early_exit(art, by_mode, latency),
        "link": link, "payload_efficiency": link["payload_efficiency"],
        "energy": energy,
        "wall_s": round(wall_s, 3),
        "timing": {"wall_s": round(wall_s, 3),
                   "rtt_s_by_mode": {k: round(sum(w.rtt_s.get(k, 0.0) for w in workers), 4) for k in ctx.modes},
                   "samples_per_s": round(ctx.pending_samples / wall_s, 2) if wall_s > 0 else None},
        "resume": {"previous_results": writer.previous, "torn_line": writer.torn},
    }
    if getattr(ctx.cfg, "faults", None) is not None:
        summary["faults"] = _faults(ctx.cfg.faults, workers)
    ee = summary["agreement"].get("early_exit") or {}
    summary["agreement_exit"], summary["agreement_top1"] = ee.get("exit"), ee.get("top1")
    summary.update(_overhead(art, by_mode))
    return summary


def _agreement(rs: list[dict]) -> dict:
    checked = [r for r in rs if "host_exit" in r]
    return {"n": len(checked), "exit": _frac([r["exit"] == r["host_exit"] for r in checked]),
            "top1": _frac([r["top1"] == r["host_top1"] for r in checked]),
            "logits_equal": _frac([r["host_logits_equal"] for r in checked])}


def _per_segment(art, by_mode) -> list[dict]:
    out = []
    for k, seg in enumerate(art.segments):
        # Every chain that reaches segment k timed it.
        ticks = [r["ticks"][k] / r.get("runs", 1) / r["tick_hz"] for j in range(k, art.n_segments)
                 for r in by_mode.get(f"segment:{j}", []) if len(r["ticks"]) > k]
        s = _stats(ticks)
        out.append({"index": k, "macs": seg.macs, "latency_median_s": s and s["median_s"],
                    "latency_p90_s": s and s["p90_s"], "n": s["n"] if s else 0})
    return out


def _reference_latency(art, latency) -> tuple[float | None, str | None]:
    if latency.get("full"):
        return latency["full"]["median_s"], "full"
    last = f"segment:{art.n_segments - 1}"
    return (latency[last]["median_s"], last) if latency.get(last) else (None, None)


def _per_exit(art, by_mode, latency, profile, energy_summary) -> list[dict]:
    ref_s, ref_name = _reference_latency(art, latency)
    exits = {e["index"]: e for e in art.manifest.get("exits", [])}
    measured = energy_summary.get("per_mode") if energy_summary["source"] != "modelled" else None

    def joules(mode: str, seconds):
        if measured is not None:
            return (measured.get(mode) or {}).get("energy_j")
        return modelled_energy_j(seconds, profile)

    ref_energy = joules(ref_name, ref_s) if ref_name else None
    out = []
    for k in range(art.n_segments):
        s = latency.get(f"segment:{k}")
        med = s["median_s"] if s else None
        energy = joules(f"segment:{k}", med)
        out.append({"index": k, "macs": exits.get(k, {}).get("cumulative_macs"),
                    "mac_ratio": exits.get(k, {}).get("mac_ratio"),
                    "latency_median": med, "latency_p90": s["p90_s"] if s else None, "latency_unit": "s",
                    "latency_ratio": med / ref_s if med is not None and ref_s else None, "latency_ratio_to": ref_name,
                    "energy_j": energy, "energy_ratio": energy / ref_energy if energy and ref_energy else None,
                    "energy_source": energy_summary["source"]})
    return out


def _early_exit(art, by_mode, latency) -> dict | None:
    rs = [r for r in by_mode.get("early_exit", []) if r.get("repeat", 0) == 0]
    if not rs:
        return None
    exits = np.array([r["exit"] for r in rs])
    ratios = {e["index"]: e.get("mac_ratio") for e in art.manifest.get("exits", [])}
    ref_s, ref_name = _reference_latency(art, latency)
    mean_s = latency["early_exit"]["mean_s"]
    mac = [ratios.get(int(e)) for e in exits]
    return {"accuracy": _frac([r["top1"] == r["label"] for r in rs if r.get("label", -1) >= 0]),
            "exit_fraction": [float(np.mean(exits == k)) for k in range(art.n_segments)],
            "mac_ratio": float(np.mean(mac)) if None not in mac else None,
            "latency_mean_s": mean_s, "latency_median_s": latency["early_exit"]["median_s"],
            "latency_ratio": mean_s / ref_s if ref_s else None, "latency_ratio_to": ref_name}


def _overhead(art, by_mode) -> dict:
    """Chained segments vs a monolithic model on the same samples and repeats, as a ratio measured in one run.

    Against the all-exits monolithic model (same ops, one subgraph) the ratio is the
    pure cost of splitting; against the full-depth model it also contains the
    intermediate exit heads, which the full-depth network does not compute.
    """
    chain = _paired(by_mode, f"segment:{art.n_segments - 1}")
    vs_full = _pair_ratio(chain, _paired(by_mode, "full"))
    vs_all = _pair_ratio(chain, _paired(by_mode, "full:all_exits"))
    if vs_full is None and vs_all is None:
        return {"segment_overhead": None, "segment_overhead_detail": None}
    chain_macs = sum(s.macs for s in art.segments)
    full_macs = art.manifest.get("full_macs") or chain_macs
    detail = {"baseline": "full:all_exits" if vs_all is not None else "full",
              "chain_vs_all_exits_ratio": vs_all, "chain_vs_full_ratio": vs_full,
              "chain_macs": chain_macs, "full_macs": full_macs,
              "note": "ratios are medians over (sample, repeat) pairs of latencies measured in the same run; the "
                      "chain runs segments 0..E-1 back to back, each with its exit head. Against full:all_exits "
                      "(every exit head in one subgraph) the ratio is the cost of splitting alone; against full "
                      "(last head only) it also holds the intermediate exit heads"}
    return {"segment_overhead": (vs_all if vs_all is not None else vs_full) - 1.0,
            "segment_overhead_detail": detail}


def _paired(by_mode, mode: str) -> dict:
    return {(r["sample"], r.get("repeat", 0)): latency_s(r) for r in by_mode.get(mode, [])}


def _pair_ratio(a: dict, b: dict) -> float | None:
    ratios = [a[k] / b[k] for k in a.keys() & b.keys() if b[k] > 0]
    return float(np.median(ratios)) if ratios else None


def _energy(profile, latency, workers) -> dict:
    measured = [w.energy for w in workers if w.energy]
    if measured:
        return {"source": measured[0]["source"], **measured[0]}
    return {"source": "modelled", "profile": profile.to_dict(),
            "note": "modelled = active power x device-measured latency; not a measurement",
            "per_mode_j": {mode: modelled_energy_j(s["median_s"], profile) for mode, s in latency.items() if s}}


def _faults(cfg, workers) -> dict:
    """What the fault-injecting relays did, summed over workers (faults.total_counts per direction)."""
    from collections import Counter

    from tinyexit.firmware_bridge.harness.faults import total_counts

    dirs = {"to_device": Counter(), "to_host": Counter()}
    for w in workers:
        counts = w.target.fault_counts() if w.target is not None and w.target.fault_counts else {}
        for d, c in counts.items():
            dirs[d].update(c)
    return {"config": cfg.to_dict(), **total_counts(dirs), "to_device": dict(dirs["to_device"]),
            "to_host": dict(dirs["to_host"])}


def _device(w) -> dict:
    return {"worker": w.name, "spec": w.spec, "url": w.target.url if w.target else None,
            "simulated_or_real": w.target.simulated_or_real if w.target else None,
            "info": w.info.to_dict() if w.info else None, "samples": len(w.samples),
            "unsupported_modes": w.unsupported, "reference_runtime": w.reference_runtime,
            "link": w.stats.to_dict() if w.stats else None,
            "error": str(w.error) if w.error else None}
