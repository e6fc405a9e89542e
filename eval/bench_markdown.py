"""Markdown, plots and the "where MACs mislead" notes of the bench section."""
from __future__ import annotations

from pathlib import Path

from tinyexit.eval.plots import figure, md_table, save

# A segment or exit whose cost share differs from its MAC share by more than this is called out.
MISLEAD_REL = 0.10


def fmt_latency(v, unit: str) -> str:
    if v is None:
        return "–"
    if unit == "instructions":
        return f"{v:,.0f} instr"
    for scale, name in ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs")):
        if abs(v) >= scale:
            return f"{v / scale:.3g} {name}"
    return f"{v / 1e-9:.3g} ns"


def label(kind: str | None) -> str:
    """Energy table label: only what a meter recorded reads as measured."""
    return {"measured": "measured", "modelled": "modelled"}.get(kind, "–")


def _fmt(v, spec: str = ".3f") -> str:
    return "–" if v is None else format(v, spec)


def mislead_notes(t: dict) -> list[str]:
    """Sentences naming where the analytic MAC count is a poor guide to measured cost."""
    notes = []
    for e in t["per_exit"]:
        d = e.get("ratio_rel_difference")
        if d is not None and abs(d) > MISLEAD_REL:
            more = "more" if d > 0 else "less"
            notes.append(f"exit {e['exit']}: measured latency ratio {e['latency_ratio']:.3f} vs MAC ratio "
                         f"{e['mac_ratio']:.3f} ({100 * d:+.0f} %): the path costs {more} than its MACs say")
    segs = [s for s in t["segments"] if s["latency_median"] is not None and s["macs"]]
    for model in sorted({s["model"] for s in segs}):
        mine = [s for s in segs if s["model"] == model]
        per_mac = sum(s["latency_median"] for s in mine) / sum(s["macs"] for s in mine)
        for s in mine:
            r = s["latency_median"] / (s["macs"] * per_mac)
            if abs(r - 1) > MISLEAD_REL:
                zero = ", ".join(s["zero_mac_ops"]) or "none"
                notes.append(f"{model} segment {s['segment']}: {r:.2f}x the {model}'s average latency per MAC "
                             f"(ops with no MACs: {zero})")
    ee = t["early_exit"]
    dec, lat = ee.get("decision_latency_mean"), ee.get("latency_mean")
    if dec and lat and dec / lat > MISLEAD_REL:
        notes.append(f"exit decisions: {fmt_latency(dec, t['latency_unit'])} per sample on average, "
                     f"{100 * dec / lat:.0f} % of the early-exit latency; MACs count none of it")
    layers = t.get("per_layer") or []
    total_i = sum(r.get("instructions") or 0 for r in layers)
    total_m = sum(r.get("macs") or 0 for r in layers)
    zero = [r for r in layers if r.get("instructions") and not r.get("macs")]
    if zero and total_i:
        z = sum(r["instructions"] for r in zero)
        kinds = ", ".join(sorted({str(r.get("op") or r.get("name")) for r in zero}))
        notes.append(f"{len(zero)} layers with 0 MACs ({kinds}) execute {z:,} instructions, "
                     f"{100 * z / total_i:.1f} % of the network")
    avg = total_i / total_m if total_m else None
    slow = [r for r in layers if avg and r.get("macs") and (r.get("instructions_per_mac") or 0) > 2 * avg]
    if slow:
        notes.append(f"more than twice the network's {avg:.2f} instructions per MAC: " + ", ".join(
            f"{r.get('name', r.get('op'))} ({r['instructions_per_mac']:.2f})" for r in slow))
    return notes


def markdown(name: str, t: dict, pngs: list[str]) -> str:
    unit = t["latency_unit"]
    ee = t["early_exit"]
    link = t["link"]
    out = [f"## Bench on target `{name}` — {t['simulated_or_real']}", "",
           f"Device: {t['device'] or '–'}. Latency is **measured** on the device "
           f"({'instruction counts' if unit == 'instructions' else 'device clock, seconds'}); MACs are "
           f"**analytic** (manifest). Ratios are to the {t['latency_reference']}.", ""]
    if t.get("artifact_matches_export") is False:
        out += ["**Stale:** these results were measured on another export than the current manifest's "
                "(artifact hash differs); re-run 'tinyexit bench' before trusting the MAC comparison.", ""]
    out += [
           md_table(["figure", "value"], [
               ["samples (early exit)" if ee.get("samples") else "samples", t["samples"]],
               [AGREEMENT_ROW,
                f"{_pct(t['agreement_top1'])} / {_pct(t['agreement_exit'])} / {_pct(t['logits_equal'])}"],
               *agreement_rows(t),
               ["segment overhead (chained vs monolithic, measured)", _pct(t["segment_overhead"], signed=True)],
               ["payload efficiency (payload / wire bytes)", _pct(t["payload_efficiency"])],
               ["link: frames / retries / CRC errors / resyncs / timeouts",
                " / ".join(_fmt(link.get(k), "") for k in ("frames", "retries", "crc_errors", "resyncs", "timeouts"))],
           ]), "", "### Per exit", "",
           md_table(["exit", "MACs (analytic)", "MAC ratio", "latency median (measured)", "p90",
                     "latency ratio", "ratio vs MACs", "energy (J)", "energy ratio", "energy is"],
                    [[e["exit"], f"{e['macs']:,}", e["mac_ratio"], fmt_latency(e["latency_median"], unit),
                      fmt_latency(e["latency_p90"], unit), e["latency_ratio"], _pct(e["ratio_rel_difference"], True),
                      _fmt(e["energy_j"], ".3g"), e["energy_ratio"], label(e["energy_kind"])] for e in t["per_exit"]]),
           "", _early_exit_md(t), "",
           f"Energy source: {t['per_exit'][0]['energy_source'] if t['per_exit'] else '–'}.", ""]
    out += _model_md(t) + _sweep_md(t)
    notes = t.get("where_macs_mislead") or []
    out += ["### Where MACs mislead", ""] + ([f"- {n}" for n in notes] or ["- nowhere beyond 10 % on this target"])
    if t.get("instructions_per_mac") is not None:
        by = ", ".join(f"{k} kernels {v:.2f}" for k, v in (t.get("instructions_per_mac_by_kernels") or {}).items() if v)
        out += ["", f"Instructions per MAC on the device, {t.get('instructions_per_mac_of') or 'reference path'}: "
                f"{t['instructions_per_mac']:.2f} (QEMU instruction counts, not cycles of a real chip)"
                + (f"; selftest profiles (all segments chained with exit heads, per layer): {by}." if by else ".")]
    if t.get("per_layer"):
        out += ["", f"Per layer ({t.get('per_layer_kernels') or '?'} kernels, from {t.get('per_layer_source')}):", "",
                md_table(["layer", "MACs (analytic)", "instructions (measured)", "instructions/MAC"],
                         [[r.get("name", r.get("op")), r.get("macs"), r.get("instructions"),
                           r.get("instructions_per_mac")] for r in t["per_layer"]])]
    out += [""] + [f"![{p}]({p})" for p in pngs]
    return "\n".join(out) + "\n"


AGREEMENT_ROW = "device-vs-host agreement: top-1 / exit / samples with identical int8 logits"


def agreement_rows(t: dict) -> list[list[str]]:
    """What the device ran, what the host compared it with, and how far apart the int8 logits were.

    Absent from a summary.json written before the harness recorded them: then nothing is claimed."""
    rows = []
    if t.get("agreement_device_runtime") or t.get("agreement_reference_kernels"):
        rows.append(["device runtime / host reference kernels",
                     f"{t.get('agreement_device_runtime') or '–'} / {t.get('agreement_reference_kernels') or '–'}"])
    hist = t.get("agreement_logit_lsb_histogram")
    if hist:
        tol = t.get("agreement_tolerance_lsb")
        beyond = t.get("agreement_logits_beyond_tolerance")
        spread = ", ".join(f"{d} LSB: {n}" for d, n in enumerate(hist) if n)
        verdict = (f"; tolerance ±{tol} LSB: " + ("all within" if not beyond else f"{beyond} samples beyond")
                   if tol is not None else "")
        rows.append(["samples by max abs(device − host) int8 logit", spread + verdict])
        by_mode = t.get("agreement_lsb_by_mode") or {}
        if any(h != hist for h in by_mode.values()):
            rows.append(["samples by max abs(device − host) int8 logit, per mode (0, 1, 2 … LSB)",
                         "; ".join(f"{m} {h}" for m, h in by_mode.items())])
        rows.append(["exit / top-1 disagreements (of which within the tolerance of the decision)",
                     f"{t.get('agreement_exit_disagree')} ({t.get('agreement_exit_disagree_borderline')}) / "
                     f"{t.get('agreement_top1_disagree')} ({t.get('agreement_top1_disagree_borderline')})"])
    return rows


def _early_exit_md(t: dict) -> str:
    ee = t["early_exit"]
    if not ee.get("samples"):
        # a model without an exit policy (the denoiser) has no early-exit runs: say what was run instead
        return (f"No early exit on the device: `{t['model']}` has no exit policy in its bundle; each of its "
                f"{len(t['per_exit'])} depths was run for every one of the {t['samples']} samples "
                "(per-exit table above).")
    return (f"Early exit on the device ({ee['samples']} samples, policy {_policy(ee.get('policy'))}): accuracy "
            f"{_pct(ee['accuracy'])}, MAC ratio {_fmt(ee['mac_ratio'])} (analytic), latency ratio "
            f"{_fmt(ee['latency_ratio'])} (measured, expected over exits; plain mean "
            f"{_fmt(ee.get('latency_mean_ratio'))}), exit fractions "
            f"{' / '.join(f'{100 * f:.1f} %' for f in ee['exit_fractions'] or [])}.")


def _model_md(t: dict) -> list[str]:
    """Without a device profile the report predicts nothing and says how to make one (with one, the profile's
    tables follow the target's section: latency_profile.markdown)."""
    lm = t["latency_model"]
    if lm.get("source") == "profile":
        return []
    return ["### Latency predicted from a device profile", "", f"{lm['status']}.", ""]


def _sweep_md(t: dict) -> list[str]:
    if not t["sweep"]:
        return []
    predicted = any(r.get("latency_predicted_ratio") is not None for r in t["sweep"])
    head = ["policy", "threshold", "MAC ratio", "latency ratio", "difference"] + (
        ["predicted latency ratio (profile, exit tests included)"] if predicted else [])
    return ["### Threshold sweep costed with measured latency", "",
            "Exit fractions from the test split's per-exit float logits (training-time predictions); "
            "expected MAC ratio (analytic) vs expected latency ratio (measured path latencies)"
            + ("; predicted: exit fractions x the device profile's early-exit paths." if predicted else "."), "",
            md_table(head, [[r["policy"], r["threshold"], r["mac_ratio"], r["latency_ratio"],
                             _pct(r["rel_difference"], True)]
                            + ([_fmt(r.get("latency_predicted_ratio"))] if predicted else []) for r in t["sweep"]]),
            ""]


def _policy(p) -> str:
    if isinstance(p, dict):
        return f"{p.get('name')}({', '.join(f'{v:g}' for v in p.get('params') or [])})"
    return "–" if p is None else str(p)


def _pct(v, signed: bool = False) -> str:
    if v is None:
        return "–"
    return f"{100 * v:+.1f} %" if signed else f"{100 * v:.1f} %"


def plots(report_dir: Path, name: str, t: dict) -> list[str]:
    out = []
    if any(e["latency_ratio"] is not None for e in t["per_exit"]):
        out.append(_ratio_plot(report_dir, name, t))
    if t["latency_model"].get("predictions"):
        out.append(_fit_plot(report_dir, name, t))
    return out


def _ratio_plot(report_dir: Path, name: str, t: dict) -> str:
    fig, ax = figure()
    pe = [e for e in t["per_exit"] if e["latency_ratio"] is not None]
    ax.plot([e["mac_ratio"] for e in pe], [e["latency_ratio"] for e in pe], "o", ms=8, label="exit k (measured)")
    for e in pe:
        ax.annotate(f"exit {e['exit']}", (e["mac_ratio"], e["latency_ratio"]), textcoords="offset points",
                    xytext=(5, 5))
    sw = [r for r in t["sweep"] if r["policy"] == "max_softmax"]
    if sw:
        ax.plot([r["mac_ratio"] for r in sw], [r["latency_ratio"] for r in sw], ".-", alpha=0.6,
                label="max-softmax sweep (expected)")
    ee = t["early_exit"]
    if ee.get("latency_ratio") is not None:
        ax.plot([ee["mac_ratio"]], [ee["latency_ratio"]], "g*", ms=12, label="early exit on device")
    hi = max([1.05] + [e["latency_ratio"] * 1.05 for e in pe] + [e["mac_ratio"] * 1.05 for e in pe])
    ax.plot([0, hi], [0, hi], "k--", lw=1, label="y = x (MACs predict latency)")
    ax.set_xlabel("MAC ratio (analytic)")
    ax.set_ylabel(f"latency ratio (measured, {t['latency_unit']})")
    ax.set_title(f"{name}: measured latency ratio vs MAC ratio")
    ax.legend(fontsize=7)
    return save(fig, report_dir / f"bench_{name}_latency_vs_mac_ratio.png")


def _fit_plot(report_dir: Path, name: str, t: dict) -> str:
    """Measured vs predicted (device profile) vs MAC-only for every path, over its MACs."""
    lm = t["latency_model"]
    rows = lm["predictions"]
    unit = "µs" if lm.get("unit") == "us" else lm.get("unit") or t["latency_unit"]
    fig, ax = figure()
    ax.plot([r["macs"] for r in rows], [r["measured"] for r in rows], "o", ms=7, label="measured")
    ax.plot([r["macs"] for r in rows], [r["predicted"] for r in rows], "rx", ms=7,
            label="predicted (device profile, out of model)")
    ax.plot([r["macs"] for r in rows], [r["mac_only"] for r in rows], "k+", ms=7, label="MAC-only (same sweep)")
    ax.set_xlabel("MACs (analytic)")
    ax.set_ylabel(f"latency ({unit})")
    ax.set_title(f"{name}: latency vs MACs per path")
    ax.legend(fontsize=7)
    return save(fig, report_dir / f"bench_{name}_latency_vs_macs.png")
