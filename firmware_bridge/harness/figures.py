"""The figures summary.json shares with the report, each computed once, here, from the result records.

Per exit: latency median/p90 (seconds; on QEMU also instructions), latency ratio
to the reference path, MAC ratio, modelled or measured energy and its ratio.
Early exit: accuracy, exit fractions, MAC ratio, expected and mean latency and
their ratios, energy.  Agreement with the host reference.  The report reads these
from summary.json and never recomputes them (tests/eval/test_figures_agree.py).
"""
from __future__ import annotations

import numpy as np

from tinyexit.firmware_bridge.harness.energy import modelled_energy_j


def ticks_per_run(rec: dict) -> float:
    """(segment ticks + exit-decision ticks) of one inference; a record may stand for `runs` runs."""
    return (sum(rec["ticks"]) + (rec.get("decision_ticks") or 0)) / (rec.get("runs") or 1)


def latency_s(rec: dict) -> float:
    return ticks_per_run(rec) / rec["tick_hz"]


def median(values) -> float | None:
    return float(np.median(np.asarray(values, np.float64))) if len(values) else None


def frac(flags: list[bool]) -> float | None:
    return round(float(np.mean(flags)), 6) if flags else None


def first_per_sample(rs: list[dict]) -> list[dict]:
    """One record per sample: timing repeats re-run the same input and must not weigh twice."""
    seen, out = set(), []
    for r in sorted(rs, key=lambda r: (r["sample"], r.get("repeat") or 0)):
        if r["sample"] not in seen:
            seen.add(r["sample"])
            out.append(r)
    return out


class Costs:
    """Latency of a record in seconds and, on a target that counts instructions, in instructions."""

    def __init__(self, instructions_per_tick: float | None):
        self.ipt = instructions_per_tick

    def s(self, rs: list[dict]) -> list[float]:
        return [latency_s(r) for r in rs]

    def instr(self, rs: list[dict]) -> list[float] | None:
        return None if self.ipt is None else [ticks_per_run(r) * self.ipt for r in rs]


def reference(art, by_mode) -> tuple[list[dict], str | None]:
    """The path ratios are taken to: the monolithic full-depth model, else all segments chained."""
    if by_mode.get("full"):
        return by_mode["full"], "full"
    last = f"segment:{art.n_segments - 1}"
    return (by_mode[last], last) if by_mode.get(last) else ([], None)


def _ratio(a, b):
    return a / b if a is not None and b else None


def per_exit(art, by_mode, costs: Costs, energy_of) -> tuple[list[dict], dict]:
    """Rows per exit, and the reference (its name, median seconds / instructions, energy)."""
    ref_rs, ref_name = reference(art, by_mode)
    ref = {"name": ref_name, "median_s": median(costs.s(ref_rs)),
           "median_instructions": median(costs.instr(ref_rs) or [])}
    ref["energy_j"] = energy_of(ref_name, ref["median_s"], ref["median_instructions"]) if ref_name else None
    exits = {e.index: e for e in art.exits}
    out = []
    for k in range(art.n_segments):
        rs, source = by_mode.get(f"segment:{k}", []), f"segment:{k} runs (segments 0..{k} chained)"
        if not rs:   # only early-exit runs were made: those that left at k timed the same path plus decisions
            rs = [r for r in by_mode.get("early_exit", []) if r.get("exit") == k]
            source = f"early-exit runs that left at exit {k}"
        v = costs.s(rs)
        med, med_i = median(v), median(costs.instr(rs) or [])
        energy = energy_of(f"segment:{k}", med, med_i)
        ex = exits.get(k)
        row = {"index": k, "macs": ex.cumulative_macs if ex else None, "mac_ratio": ex.mac_ratio if ex else None,
               "latency_median": med, "latency_p90": float(np.percentile(v, 90)) if v else None,
               "latency_n": len(v), "latency_unit": "s", "latency_source": source,
               "latency_ratio": _ratio(med, ref["median_s"]), "latency_ratio_to": ref_name,
               "energy_j": energy, "energy_ratio": _ratio(energy, ref["energy_j"]) if energy else None}
        if costs.ipt is not None:
            vi = costs.instr(rs)
            row["latency_median_instructions"] = med_i
            row["latency_p90_instructions"] = float(np.percentile(vi, 90)) if vi else None
            row["instructions_per_mac"] = _ratio(med_i, row["macs"])
        out.append(row)
    return out, ref


def early_exit(art, by_mode, costs: Costs, ref: dict, exit_rows: list[dict]) -> dict | None:
    all_rs = by_mode.get("early_exit", [])
    rs = first_per_sample(all_rs)
    if not rs:
        return None
    n = art.n_segments
    exits = np.array([int(r["exit"]) for r in rs])
    fractions = np.bincount(exits, minlength=n) / len(exits)
    cum = {e.index: e.mac_ratio for e in art.exits}
    mac = [cum.get(int(e)) for e in exits]

    def expected(values_of) -> float | None:
        meds = [median(values_of([r for r in all_rs if r.get("exit") == k])) for k in range(n)]
        if any(m is None for f, m in zip(fractions, meds) if f > 0):
            return None
        return float(sum(f * m for f, m in zip(fractions, meds) if f > 0))

    def mean(values) -> float | None:
        return float(np.mean(values)) if values else None

    exp_s, mean_s = expected(costs.s), mean(costs.s(all_rs))
    energies = [row["energy_j"] for row in exit_rows]
    out = {"samples": len(rs),
           "accuracy": frac([r["top1"] == r["label"] for r in rs if r.get("label", -1) >= 0]),
           "exit_fraction": fractions.tolist(), "exit_fractions": fractions.tolist(),
           "mac_ratio": float(np.mean(mac)) if None not in mac else None,
           "latency_expected_s": exp_s, "latency_mean_s": mean_s, "latency_median_s": median(costs.s(all_rs)),
           "latency_ratio": _ratio(exp_s, ref["median_s"]), "latency_mean_ratio": _ratio(mean_s, ref["median_s"]),
           "latency_ratio_to": ref["name"],
           "latency_ratio_definition": "sum over exits of (share leaving there) x (median latency of the early-exit "
                                       "runs that left there), over the reference path's median latency",
           "decision_latency_mean_s": mean([(r.get("decision_ticks") or 0) / (r.get("runs") or 1) / r["tick_hz"]
                                            for r in all_rs]),
           "energy_j": (float(np.mean([energies[e] for e in exits]))
                        if all(v is not None for v in energies) else None)}
    if costs.ipt is not None:
        out["latency_expected_instructions"] = expected(costs.instr)
        out["latency_mean_instructions"] = mean(costs.instr(all_rs))
        out["decision_latency_mean_instructions"] = mean(
            [(r.get("decision_ticks") or 0) / (r.get("runs") or 1) * costs.ipt for r in all_rs])
    return out


def lsb_histogram(rs: list[dict]) -> list[int] | None:
    """Samples per max |device - host| int8 logit difference: [n at 0 LSB, n at 1 LSB, ...]."""
    values = [int(r["host_logit_lsb"]) for r in rs if r.get("host_logit_lsb") is not None]
    return np.bincount(values).astype(int).tolist() if values else None


def agreement_detail(rs: list[dict]) -> dict:
    """Exit and top-1 agreement with the tolerance applied: a disagreement is `borderline` when the host's
    decision sits within the tolerance (reference.compare), else it is a real disagreement."""
    hist = lsb_histogram(rs)
    tols = sorted({int(r["tolerance_lsb"]) for r in rs if "tolerance_lsb" in r})
    tol = tols[-1] if tols else None
    exit_off = [r for r in rs if r["exit"] != r["host_exit"]]
    top1_off = [r for r in rs if r["top1"] != r["host_top1"]]
    beyond = sum(hist[tol + 1:]) if hist is not None and tol is not None else None
    real = sum(1 for r in exit_off + top1_off if not r.get("host_borderline"))
    return {"logit_lsb_histogram": hist, "logit_lsb_max": len(hist) - 1 if hist else None,
            "logits_beyond_tolerance": beyond, "tolerance_lsb": tol,
            "exit_disagree": len(exit_off), "exit_disagree_borderline": sum(bool(r.get("host_borderline"))
                                                                            for r in exit_off),
            "top1_disagree": len(top1_off), "top1_disagree_borderline": sum(bool(r.get("host_borderline"))
                                                                            for r in top1_off),
            "within_tolerance": (beyond == 0 and real == 0) if beyond is not None else None}


def agreement(by_mode, runtime_names=()) -> dict:
    """Device vs host reference over the early-exit runs (one per sample), else over every mode's
    first run of each sample (a model without an exit policy, e.g. the denoiser)."""
    if by_mode.get("early_exit"):
        rs, scope = first_per_sample(by_mode["early_exit"]), "early_exit"
    else:
        rs, scope = [r for rs in by_mode.values() for r in first_per_sample(rs)], "all modes"
    checked = [r for r in rs if "host_exit" in r]
    detail = agreement_detail(checked)
    kernels = sorted({r["host_kernels"] for r in checked if r.get("host_kernels")})
    return {"agreement_scope": scope, "agreement_n": len(checked),
            "agreement_top1": frac([r["top1"] == r["host_top1"] for r in checked]),
            "agreement_exit": frac([r["exit"] == r["host_exit"] for r in checked]),
            "logits_equal": frac([bool(r["host_logits_equal"]) for r in checked]),
            "agreement_device_runtime": ", ".join(sorted({n for n in runtime_names if n})) or None,
            "agreement_reference_kernels": ", ".join(kernels) or None,
            **{f"agreement_{k}": v for k, v in detail.items()}}


def instructions_per_mac(art, ref: dict) -> dict:
    """Instructions per MAC of the reference path this bench measured (full-depth model, else the chain
    of all segments with their exit heads), so it is never confused with the selftest profile's figure."""
    if ref.get("median_instructions") is None:
        return {"instructions_per_mac": None, "instructions_per_mac_of": None}
    if ref["name"] == "full":
        macs, what = art.full_macs, "monolithic full-depth model (bench, median)"
    else:
        macs, what = sum(s.macs for s in art.segments), "all segments chained with exit heads (bench, median)"
    return {"instructions_per_mac": _ratio(ref["median_instructions"], macs), "instructions_per_mac_of": what}


def energy_function(profile, measured: dict | None):
    """energy_of(mode, seconds, instructions) -> J: the meter's figure for the mode when measured,
    else the profile's model (instructions when the target counts them)."""
    def energy_of(mode, seconds, instructions):
        if measured is not None:
            return (measured.get(mode) or {}).get("energy_j")
        return modelled_energy_j(profile, seconds=seconds, instructions=instructions)
    return energy_of
