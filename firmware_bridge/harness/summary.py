"""summary.json of a benchmark, computed from every line of results.jsonl (resumed runs included).

Latency of one result = (sum of its segment ticks + decision ticks) / runs / tick_hz.
Per-exit latency comes from the `segment:k` chains (median and p90 over samples
and repeats).  The early-exit cost is an expectation over the test split: the
share of samples leaving at each exit times the median latency of the early-exit
runs that left there (a few preempted runs cannot move it); the plain mean is
kept beside it.  Energy is modelled with the profile of the device's kind
(energy.py, labelled "modelled" with the profile's name) unless a power monitor
measured it.  Every figure the report shares with this file is computed once,
in figures.py; the report renders it and never recomputes it.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from tinyexit import __version__
from tinyexit.firmware_bridge.harness import figures as fig
from tinyexit.firmware_bridge.harness.energy import basis, device_kind, modelled_energy_j, profile_for
from tinyexit.firmware_bridge.harness.figures import latency_s
from tinyexit.firmware_bridge.harness.qemu import INSTRUCTIONS_PER_TICK


def _stats(values: list[float]) -> dict | None:
    if not values:
        return None
    v = np.asarray(values, np.float64)
    return {"median_s": float(np.median(v)), "p90_s": float(np.percentile(v, 90)), "mean_s": float(v.mean()),
            "n": int(len(v))}


def summarize(records: list[dict], art, ctx, workers, stats, wall_s: float, writer) -> dict:
    recs = [r for r in records if r.get("model", art.model) == art.model]
    by_mode = defaultdict(list)
    for r in recs:
        by_mode[r["mode"]].append(r)
    latency = {mode: _stats([latency_s(r) for r in rs]) for mode, rs in by_mode.items()}
    first = next((w for w in workers if w.info is not None), None)
    target_kind = first.target.kind if first and first.target else "url"
    info = first.info.to_dict() if first else {}
    kind = device_kind(target_kind, info)
    profile = profile_for(kind)
    # -icount shift=0: QEMU's timer ticks are a fixed number of guest instructions
    costs = fig.Costs(INSTRUCTIONS_PER_TICK if target_kind == "qemu" else None)
    energy = _energy(profile, kind, costs, by_mode, workers)
    measured = energy.get("per_mode") if energy["source"] != "modelled" else None
    per_exit, ref = fig.per_exit(art, by_mode, costs, fig.energy_function(profile, measured))
    for row in per_exit:
        row["energy_source"], row["energy_profile"] = energy["source"], energy.get("profile_name")
    early = fig.early_exit(art, by_mode, costs, ref, per_exit)
    if early is not None:
        early["energy_source"] = energy["source"]
    link = stats.to_dict()
    summary = {
        "tinyexit_version": __version__, "target": writer.path.parent.name, "model": art.model,
        "artifact_hash": art.artifact_hash,
        "device": ", ".join(sorted({w.info.device for w in workers if w.info})) or None,
        "device_kind": kind,
        "simulated_or_real": first.target.simulated_or_real if first else None,
        "devices": [_device(w) for w in workers],
        "samples": len({r["sample"] for r in recs}), "samples_requested": int(len(ctx.y)),
        "modes": list(ctx.modes), "repeats": ctx.cfg.repeats, "warmup": ctx.cfg.warmup,
        "counts": {mode: len(rs) for mode, rs in by_mode.items()},
        "policy": art.policy.to_dict() if art.policy else None,
        "accuracy": {mode: fig.frac([r["top1"] == r["label"] for r in rs if r.get("repeat", 0) == 0
                                     and r.get("label", -1) >= 0]) for mode, rs in by_mode.items()},
        "agreement": {mode: _agreement(rs) for mode, rs in by_mode.items()},
        "latency_unit": "s", "latency": latency,
        "instructions_per_tick": costs.ipt,
        "per_segment": _per_segment(art, by_mode),
        "latency_reference": ref["name"],
        "per_exit": per_exit,
        "early_exit": early,
        "link": link, "payload_efficiency": link["payload_efficiency"],
        "energy": energy,
        "wall_s": round(wall_s, 3),
        "timing": {"wall_s": round(wall_s, 3),
                   "rtt_s_by_mode": {k: round(sum(w.rtt_s.get(k, 0.0) for w in workers), 4) for k in ctx.modes},
                   "samples_per_s": round(ctx.pending_samples / wall_s, 2) if wall_s > 0 else None},
        "resume": {"previous_results": writer.previous, "torn_line": writer.torn},
    }
    if costs.ipt is not None:
        summary.update(fig.instructions_per_mac(art, ref))
    if getattr(ctx.cfg, "faults", None) is not None:
        summary["faults"] = _faults(ctx.cfg.faults, workers)
    summary.update(fig.agreement(by_mode, [w.info.runtime_name for w in workers if w.info]))
    summary.update(_overhead(art, by_mode))
    return summary


def _agreement(rs: list[dict]) -> dict:
    checked = [r for r in rs if "host_exit" in r]
    detail = fig.agreement_detail(fig.first_per_sample(checked))  # one per sample: repeats ran the same input
    return {"n": len(checked), "exit": fig.frac([r["exit"] == r["host_exit"] for r in checked]),
            "top1": fig.frac([r["top1"] == r["host_top1"] for r in checked]),
            "logits_equal": fig.frac([r["host_logits_equal"] for r in checked]),
            **{k: detail[k] for k in ("logit_lsb_histogram", "tolerance_lsb", "exit_disagree_borderline",
                                      "top1_disagree_borderline", "within_tolerance")}}


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


FORMULA = {"instructions": "energy per instruction x instructions",
           "seconds": "active power x device-measured seconds"}


def _energy(profile, kind: str, costs, by_mode, workers) -> dict:
    measured = [w.energy for w in workers if w.energy]
    if measured:
        return {"source": measured[0]["source"], "device_kind": kind, **measured[0]}
    counts_instructions = costs.ipt is not None
    how = basis(profile, counts_instructions)
    if how is None:
        return {"source": "none", "device_kind": kind, "profile": None, "profile_name": None, "per_mode_j": {},
                "note": f"no energy profile for a device of kind '{kind}' (it did not report a board model tinyexit "
                        "knows); attach a power meter with --power to measure it"}
    per_mode = {}
    for mode, rs in by_mode.items():
        inst = fig.median(costs.instr(rs) or []) if counts_instructions else None
        per_mode[mode] = modelled_energy_j(profile, seconds=fig.median(costs.s(rs)), instructions=inst)
    return {"source": "modelled", "label": f"modelled (profile '{profile.name}')", "device_kind": kind,
            "profile": profile.to_dict(), "profile_name": profile.name, "basis": how,
            "note": f"modelled = {FORMULA[how]} (median per mode); not a measurement",
            "per_mode_j": per_mode}


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
            "kind": w.target.kind if w.target else None,
            "simulated_or_real": w.target.simulated_or_real if w.target else None,
            "info": w.info.to_dict() if w.info else None, "samples": len(w.samples),
            "unsupported_modes": w.unsupported, "reference_runtime": w.reference_runtime,
            "link": w.stats.to_dict() if w.stats else None,
            "error": str(w.error) if w.error else None}
