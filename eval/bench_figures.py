"""The figures a bench's summary.json already holds, taken as they are into the report.

The harness computes each shared figure once (firmware_bridge/harness/figures.py):
per-exit latency, latency and MAC ratios, energy, early-exit accuracy / fractions /
ratios, agreement, instructions per MAC.  The report renders those values and
never recomputes them, so summary.json, report.json and report.md agree.  Energy
in particular is only ever rendered from summary.json (modelled by the harness
with a named profile, or measured by a meter).  A summary.json written before the
harness carried these figures (no `latency_reference`) leaves the report's own
reduction of results.jsonl in place, labelled by `figures_from`.
"""
from __future__ import annotations


def carries_figures(s: dict) -> bool:
    return "latency_reference" in s and isinstance(s.get("per_exit"), list)


def energy_label(energy: dict) -> tuple[str | None, str]:
    """(energy_kind, energy_source sentence) of summary.json's energy block."""
    src = str(energy.get("source") or "")
    if src.startswith("measured"):
        return "measured", f"measured: {energy.get('meter') or src.partition(':')[2] or 'power meter'}"
    prof = energy.get("profile") if isinstance(energy.get("profile"), dict) else None
    if src == "modelled" and prof:
        return "modelled", f"modelled: profile '{prof.get('name')}' ({prof.get('source')})"
    if src == "none":
        return None, f"not modelled: {energy.get('note') or 'no energy profile for this device'}"
    return None, "not in summary.json (re-run 'tinyexit bench' for energy figures)"


def mode_energy(energy: dict, mode: str | None) -> float | None:
    """One mode's joules as summary.json states them (measured per_mode, or modelled per_mode_j)."""
    if mode is None:
        return None
    per = energy.get("per_mode")
    if isinstance(per, dict) and isinstance(per.get(mode), dict):
        return per[mode].get("energy_j")
    return (energy.get("per_mode_j") or {}).get(mode)


def apply_energy(out: dict, s: dict, n_segments: int) -> None:
    """Per-exit and early-exit energy from summary.json: its per_exit rows when it has them, else its
    per-mode joules (an older summary), the ratio taken to the same reference path as latency."""
    energy = s.get("energy") if isinstance(s.get("energy"), dict) else {}
    kind, source = energy_label(energy)
    rows = {r.get("index"): r for r in s.get("per_exit") or [] if isinstance(r, dict)}
    ref_mode = "full" if mode_energy(energy, "full") is not None else f"segment:{n_segments - 1}"
    ref = mode_energy(energy, ref_mode)
    for e in out["per_exit"]:
        row = rows.get(e["exit"])
        if row is not None and "energy_j" in row:
            e["energy_j"], e["energy_ratio"] = row.get("energy_j"), row.get("energy_ratio")
        else:
            j = mode_energy(energy, f"segment:{e['exit']}")
            e["energy_j"], e["energy_ratio"] = j, (j / ref if j and ref else None)
        e["energy_kind"], e["energy_source"] = kind, source
    out["energy_profile"] = energy.get("profile")
    out["energy_device_kind"] = energy.get("device_kind") or s.get("device_kind")
    ee = out["early_exit"]
    ee["energy_kind"] = kind
    sum_ee = s.get("early_exit") if isinstance(s.get("early_exit"), dict) else {}
    ee["energy_j"] = sum_ee.get("energy_j")


def apply_figures(out: dict, s: dict, unit: str) -> None:
    """Overwrite the report's per-exit, early-exit and agreement figures with summary.json's."""
    if not carries_figures(s):
        out["figures_from"] = "results.jsonl (summary.json predates the harness's figures)"
        return
    out["figures_from"] = "summary.json"
    instr = unit == "instructions"
    rows = {r.get("index"): r for r in s["per_exit"] if isinstance(r, dict)}
    for e in out["per_exit"]:
        row = rows.get(e["exit"])
        if row is None:
            continue
        e["mac_ratio"] = row.get("mac_ratio", e["mac_ratio"])
        e["latency_median"] = row.get("latency_median_instructions" if instr else "latency_median")
        e["latency_p90"] = row.get("latency_p90_instructions" if instr else "latency_p90")
        e["latency_n"] = row.get("latency_n", e.get("latency_n"))
        e["latency_source"] = row.get("latency_source", e.get("latency_source"))
        e["latency_ratio"] = row.get("latency_ratio")
        r, m = e["latency_ratio"], e["mac_ratio"]
        e["ratio_rel_difference"] = (r - m) / m if r is not None and m else None
        if instr:
            e["instructions_per_mac"] = row.get("instructions_per_mac")
    ee_s = s.get("early_exit")
    if isinstance(ee_s, dict):
        ee = out["early_exit"]
        suffix = "_instructions" if instr else "_s"
        ee.update({"samples": ee_s.get("samples", ee.get("samples")), "accuracy": ee_s.get("accuracy"),
                   "mac_ratio": ee_s.get("mac_ratio"), "exit_fractions": ee_s.get("exit_fractions"),
                   "latency_ratio": ee_s.get("latency_ratio"), "latency_mean_ratio": ee_s.get("latency_mean_ratio"),
                   "latency_expected": ee_s.get("latency_expected" + suffix),
                   "latency_mean": ee_s.get("latency_mean" + suffix),
                   "decision_latency_mean": ee_s.get("decision_latency_mean" + suffix),
                   "latency_ratio_definition": ee_s.get("latency_ratio_definition")})
        out["samples"] = ee["samples"] or out.get("samples")
    if isinstance(s.get("agreement"), dict):  # per mode: the int8 logit distance to the host reference
        out["agreement_lsb_by_mode"] = {m: a.get("logit_lsb_histogram") for m, a in s["agreement"].items()
                                        if isinstance(a, dict) and a.get("logit_lsb_histogram")}
    for key in ("agreement_top1", "agreement_exit", "logits_equal", "agreement_scope", "agreement_n",
                "agreement_device_runtime", "agreement_reference_kernels", "agreement_logit_lsb_histogram",
                "agreement_logit_lsb_max", "agreement_logits_beyond_tolerance", "agreement_tolerance_lsb",
                "agreement_exit_disagree", "agreement_exit_disagree_borderline", "agreement_top1_disagree",
                "agreement_top1_disagree_borderline", "agreement_within_tolerance"):
        if key in s:
            out[key] = s[key]
    if instr and "instructions_per_mac" in s:
        out["instructions_per_mac"] = s["instructions_per_mac"]
        out["instructions_per_mac_of"] = s.get("instructions_per_mac_of")
