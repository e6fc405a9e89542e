"""The report's first table: the few figures a reader looks for, each labelled with how it was obtained."""
from __future__ import annotations

from tinyexit.eval.plots import md_table


def _g(d: dict, *path, default=None):
    for key in path:
        if not isinstance(d, dict) or key not in d:
            return default
        d = d[key]
    return d


def _pct(v) -> str:
    return "–" if v is None else f"{100 * v:.2f} %"


def headline(data: dict) -> str:
    rows = []
    c = data.get("classifier")
    if c and c.get("reference"):  # trained without the study networks: the reference is the net's full depth
        ref, ee = c["reference"], c["early_exit"]
        rows.append([f"classifier test accuracy, {ref['label']} (float)", _pct(ref.get("accuracy")),
                     "measured on data"])
        rows.append([f"early exit at threshold {ee['threshold']:g} (chosen on val): accuracy / MAC ratio vs full "
                     "depth", f"{_pct(_g(c, 'accuracy', 'early_exit'))} / {ee['mac_ratio_vs_full']:.3f}",
                     "accuracy measured, MACs analytic"])
    elif c:
        rows.append(["classifier test accuracy, full network (float)", _pct(_g(c, "accuracy", "baseline")),
                     "measured on data"])
        ee = c["early_exit"]
        rows.append([f"early exit at threshold {ee['threshold']:g} (chosen on val): accuracy / MAC ratio vs the "
                     "plain baseline network",
                     f"{_pct(_g(c, 'accuracy', 'early_exit'))} / {ee['mac_ratio']:.3f}",
                     "accuracy measured, MACs analytic"])
    e = _g(data, "export", "classifier", "early_exit_int8")
    if e:
        rows.append(["early exit, int8 on TFLite Micro: accuracy / MAC ratio vs the full-depth int8 graph",
                     f"{_pct(e['accuracy'])} / {e['mac_ratio']:.3f}", "measured on data"])
    for name, b in sorted((data.get("bench") or {}).items()):
        ee = b.get("early_exit") or {}
        if ee.get("latency_ratio") is not None:
            rows.append([f"bench `{name}`: early-exit latency ratio vs MAC ratio (both vs full depth)",
                         f"{ee['latency_ratio']:.3f} vs {ee.get('mac_ratio', float('nan')):.3f}",
                         f"measured ({b.get('latency_unit', '?')}; {b.get('simulated_or_real', '')})"])
        if b.get("instructions_per_mac"):
            of = b.get("instructions_per_mac_of") or "full network"
            rows.append([f"bench `{name}`: instructions per MAC, {of}", f"{b['instructions_per_mac']:.2f}",
                         "measured (QEMU instruction count; bench summary.json)"])
    f = data.get("firmware")
    if f:
        rows.append([f"firmware ({f['board']}): flash / RAM / peak arena vs TFLite Micro arena",
                     f"{f['flash_bytes']:,} B / {f['ram_bytes']:,} B / {f['peak_arena_bytes']:,} B vs "
                     f"{f['tflm_arena_bytes']:,} B", "measured (ELF sizes; TFLM interpreter)"])
    d = data.get("denoiser")
    if d:
        rows.append(["denoiser bits/dim (test) vs per-pixel Bernoulli",
                     f"{d['bits_per_dim']:.4f} vs {d['bernoulli_baseline_bits_per_dim']:.4f}", "measured on data"])
        a = d.get("adaptive") or {}
        if a.get("macs_per_sample_full"):
            rows.append(["denoiser adaptive depth: MACs saved per sample / bits/dim increase",
                         f"{100 * (1 - a['macs_per_sample_schedule'] / a['macs_per_sample_full']):.1f} % / "
                         f"{100 * a.get('bits_per_dim_increase', float('nan')):+.2f} %",
                         "MACs analytic, bits/dim measured"])
    if not rows:
        return ""
    return "## Headline\n\n" + md_table(["figure", "value", "how obtained"], rows) + "\n"
