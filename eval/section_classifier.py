"""Report section "classifier": the early-exit study answered on the test split.

Reads RUN/predictions/*.npz (per-exit logits, and the MACs training counted, saved at
training time) and the classifier bundle (RUN/export/classifier, through tinyexit.bundle):
the exported model's MACs come from its graph, its operating threshold is the one the
bundle carries (chosen on val at training time, or an export override), with provenance.
No torch: nothing here runs or loads a network.  Accuracies are measured on data; MACs are
analytic counts.  `tinyexit report --threshold` is a what-if and is labelled so.
"""
from __future__ import annotations

import re
import zipfile
from pathlib import Path

import numpy as np

from tinyexit.errors import UserError
from tinyexit.eval import study
from tinyexit.eval.plots import figure, md_table, save
from tinyexit.eval.report import Section
from tinyexit.exit_policy import ExitPolicy
from tinyexit.rundir import load_config

ORDER = 10


DEFAULT_THRESHOLD = 0.9
GRAPH_SOURCE = "counted from the exported TFLite graph (bundle manifest)"


def _predictions(run: Path, name: str) -> tuple[study.Predictions, study.Predictions]:
    path = run / "predictions" / f"{name}.npz"
    try:
        d = np.load(path)
        return (study.Predictions(d["val_logits"], d["val_y"]), study.Predictions(d["test_logits"], d["test_y"]))
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise UserError(f"{path}: unreadable predictions ({type(exc).__name__}); re-run 'tinyexit train early-exit'") from None


def _npz_field(run: Path, name: str, key: str):
    path = run / "predictions" / f"{name}.npz"
    try:
        with np.load(path) as d:
            return d[key] if key in d else None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return None


def _exit_macs(run: Path, name: str) -> list[int]:
    """Cumulative MACs per exit that training counted and saved beside the predictions."""
    macs = _npz_field(run, name, "exit_macs")
    if macs is None:
        raise UserError(f"{run}/predictions/{name}.npz: no MAC counts (trained by an older tinyexit); "
                        "re-run 'tinyexit train early-exit'")
    return [int(m) for m in macs]


def _bundle(run: Path):
    from tinyexit.bundle import load_bundle

    if not (run / "export" / "classifier" / "manifest.json").is_file():
        return None
    return load_bundle(run / "export" / "classifier")


def _run_policy(run: Path, cfg: dict, bundle) -> tuple[float, dict]:
    """The operating threshold of the run and where it came from: the bundle's policy (what a device runs),
    else the one training chose (config.json), else the default."""
    if bundle is not None and bundle.policy is not None:
        prov = bundle.policy_provenance.to_dict() if bundle.policy_provenance else {"source": "unknown"}
        return float(bundle.policy.params[0]), {**prov, "read_from": "export/classifier/manifest.json"}
    chosen = cfg.get("exit_policy")
    if chosen:
        return float(chosen["params"][0]), {**chosen.get("provenance", {}), "read_from": "config.json"}
    return DEFAULT_THRESHOLD, {"source": "default", "split": None, "rule": "tinyexit's default threshold",
                               "chosen_value": None, "read_from": None}


def build(run_dir: Path, report_dir: Path) -> Section | None:
    if not (run_dir / "predictions" / "early_exit.npz").is_file():
        return None
    cfg = load_config(run_dir)["classifier"]
    val, test = _predictions(run_dir, "early_exit")
    bundle = _bundle(run_dir)
    if bundle is not None and len(bundle.exits) == val.logits.shape[0]:
        cum, macs_source = [e.cumulative_macs for e in bundle.exits], GRAPH_SOURCE
    else:
        cum, macs_source = _exit_macs(run_dir, "early_exit"), _macs_source(run_dir, "early_exit")
    # Without the study networks (no --study, or the own-segments API) the reference every MAC ratio is
    # taken against is the early-exit net at full depth; what needs the study is left null.
    has_study = (run_dir / "predictions" / "baseline.npz").is_file()
    if has_study:
        _, base_test = _predictions(run_dir, "baseline")
        base_macs = _exit_macs(run_dir, "baseline")[-1]
        base_acc = study.accuracy(base_test.logits[-1], base_test.y)
    else:
        base_macs, base_acc = cum[-1], None

    run_threshold, provenance = _run_policy(run_dir, cfg, bundle)
    what_if = load_config(run_dir).get("report", {}).get("threshold")
    threshold = what_if if what_if is not None else run_threshold
    policy = ExitPolicy("max_softmax", (threshold,))
    chosen = study.evaluate(policy, test, cum)
    rows = study.sweep(val, test, cum, base_macs)
    smalls = _small_networks(run_dir, base_macs, rows) if has_study else None
    small = min(smalls, key=lambda s: abs(s["macs"] - chosen["mean_macs"])) if smalls else None
    data = {
        "splits": cfg.get("splits"),
        "macs": {"full": cum[-1], "per_exit_cumulative": cum, "baseline": base_macs if has_study else None,
                 "small": small["macs"] if small else None, "unit": "MACs per sample (analytic)",
                 "source": {"early_exit": macs_source,
                            "baseline": _macs_source(run_dir, "baseline") if has_study else None,
                            "small": _macs_source(run_dir, small["name"]) if small else None}},
        "accuracy": {"baseline": base_acc,
                     "small": small["accuracy"] if small else None,
                     "per_exit": [study.accuracy(test.logits[k], test.y) for k in range(len(cum))],
                     "early_exit": chosen["accuracy"], "split": "test"},
        "early_exit": {"policy": "max_softmax", "threshold": threshold,
                       "chosen_on": ("what-if (tinyexit report --threshold), not the run's policy"
                                     if what_if is not None else _chosen_on(provenance)),
                       "what_if": what_if is not None,
                       "run_threshold": run_threshold, "threshold_provenance": provenance,
                       "exit_fractions": chosen["exit_fractions"], "mac_ratio": chosen["mean_macs"] / base_macs,
                       "mac_ratio_vs_full": chosen["mean_macs"] / cum[-1], "mean_macs": chosen["mean_macs"],
                       **study.confidence_split(policy, test)},
        "sweep": rows,
        "small_networks": smalls,
        "small_comparison": small["name"] if small else None,
        "seeds": _seed_study(run_dir) if has_study else None,
    }
    spike = study.spike_threshold(rows)
    data["spike_threshold"] = spike["threshold"]
    data["spike"] = spike
    data["min_threshold_beating_small"] = (study.min_threshold_beating(rows, small["accuracy"]) if small else None)
    data["curve_vs_small"] = _curve_vs_small(rows, smalls) if has_study else None
    if not has_study:
        data["reference"] = _no_study_reference(cfg, data)
    plots = [_plot_curve(report_dir, data), _plot_exit_bars(report_dir, rows)]
    return Section("classifier", data, _markdown(data, plots), plots)


REFERENCE_LABEL = "early-exit net at full depth; trained without --study: no separate baseline"
# The report.json keys a run without the study networks leaves null.
NEEDS_STUDY = ("macs.baseline", "macs.small", "accuracy.baseline", "accuracy.small", "small_networks",
               "small_comparison", "seeds", "min_threshold_beating_small", "curve_vs_small")


def _no_study_reference(cfg: dict, d: dict) -> dict:
    """What every MAC ratio is taken against when the run has no plain baseline, and why figures are missing."""
    own = cfg.get("arch_name") == "own-segments"
    how = ("a run from your own segments (tinyexit.models.own_segments) has none, so train a built-in "
           "architecture with 'tinyexit train early-exit --study' to get them" if own else
           "re-train with 'tinyexit train early-exit --study' (same --arch, --dataset and --epochs) to get them")
    return {"model": "early_exit", "exit": len(d["macs"]["per_exit_cumulative"]) - 1, "label": REFERENCE_LABEL,
            "accuracy": d["accuracy"]["per_exit"][-1], "macs": d["macs"]["full"],
            "mac_ratios_are_vs": "the early-exit net at full depth (its last exit)",
            "left_out": list(NEEDS_STUDY),
            "left_out_why": ("The small-network comparison and the seed table are left out: they need the study "
                             "networks (plain baseline, small networks, extra seeds), which this run was trained "
                             f"without; {how}.")}


def _chosen_on(prov: dict) -> str:
    """The old report.json key: "val" when training chose it on val, else the source in words."""
    if prov.get("source") == "chosen at training":
        return prov.get("split") or "val"
    return str(prov.get("source"))


def _macs_source(run: Path, name: str) -> str:
    src = _npz_field(run, name, "macs_source")
    return str(src) if src is not None else "unknown"


def _small_networks(run: Path, base_macs: int, rows: list[dict]) -> list[dict]:
    out = []
    for path in sorted((run / "predictions").glob("small_w*.npz")):
        _, test = _predictions(run, path.stem)
        macs = _exit_macs(run, path.stem)[-1]
        acc = study.accuracy(test.logits[-1], test.y)
        ee_acc = study.curve_accuracy_at(rows, macs / base_macs)
        out.append({"name": path.stem, "macs": macs, "mac_ratio": macs / base_macs, "accuracy": acc,
                    "early_exit_accuracy_at_same_macs": ee_acc,
                    "early_exit_better": None if ee_acc is None else ee_acc > acc})
    return out


def _curve_vs_small(rows: list[dict], smalls: list[dict]) -> dict:
    """Is the early-exit curve above the small networks' curve?  Compared at each max-softmax
    sweep point whose MAC ratio lies inside the small networks' range (linear interpolation)."""
    pts = sorted((s["mac_ratio"], s["accuracy"]) for s in smalls)
    if len(pts) < 2:
        return {"points_compared": 0}
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    cmp = [{"threshold": r["threshold"], "mac_ratio": r["mac_ratio"], "early_exit": r["accuracy"],
            "small_curve": float(np.interp(r["mac_ratio"], xs, ys))}
           for r in rows if r["policy"] == "max_softmax" and xs[0] <= r["mac_ratio"] <= xs[-1]]
    above = sum(c["early_exit"] > c["small_curve"] for c in cmp)
    return {"points_compared": len(cmp), "points_above": above, "points": cmp,
            "early_exit_curve_above_small": bool(cmp) and above == len(cmp)}


def _seed_study(run: Path) -> list[dict]:
    """Per training seed: the threshold training chose on val, test accuracy gap to full depth, MAC ratio."""
    out = []
    names = ["early_exit"] + sorted(p.stem for p in (run / "predictions").glob("early_exit_seed*.npz"))
    for name in names:
        suffix = name[len("early_exit"):]
        t = _npz_field(run, name, "threshold")
        if not (run / "predictions" / f"baseline{suffix}.npz").is_file() or t is None:
            continue
        t = float(t)
        val, test = _predictions(run, name)
        cum = _exit_macs(run, name)
        _, base_test = _predictions(run, f"baseline{suffix}")
        base_macs = _exit_macs(run, f"baseline{suffix}")[-1]
        r = study.evaluate(ExitPolicy("max_softmax", (t,)), test, cum)
        full = study.accuracy(test.logits[-1], test.y)
        out.append({"model": name, "seed": int(m.group(1)) if (m := re.search(r"seed(\d+)", name)) else 0,
                    "threshold": t, "threshold_chosen_on": "val (at training)",
                    "early_exit_accuracy": r["accuracy"], "full_depth_accuracy": full,
                    "baseline_accuracy": study.accuracy(base_test.logits[-1], base_test.y),
                    "gap_vs_full_depth": r["accuracy"] - full, "mac_ratio": r["mean_macs"] / base_macs})
    return out


def _plot_curve(report_dir: Path, d: dict) -> str:
    fig, ax = figure()
    for name, style in (("max_softmax", "o-"), ("entropy", "s--"), ("patience", "^:"), ("calibrated", "d-.")):
        pts = sorted((r["mac_ratio"], r["accuracy"]) for r in d["sweep"] if r["policy"] == name)
        ax.plot([p[0] for p in pts], [100 * p[1] for p in pts], style, ms=4, label=f"early exit: {name}")
    fixed = [r for r in d["sweep"] if r["policy"] == "fixed_exit"]
    ax.plot([r["mac_ratio"] for r in fixed], [100 * r["accuracy"] for r in fixed], "kv", ms=7, mfc="none",
            label="every sample leaves at exit k")
    sm = d["small_networks"] or []
    if d.get("reference") is None:  # a run with the study networks: the plain baseline and the small networks
        ax.plot([1.0], [100 * d["accuracy"]["baseline"]], "k*", ms=12, label="baseline (full network)")
        ax.plot([s["mac_ratio"] for s in sm], [100 * s["accuracy"] for s in sm], "rX-", ms=9, label="small networks")
    ee = d["early_exit"]
    ax.plot([ee["mac_ratio"]], [100 * d["accuracy"]["early_exit"]], "go", ms=12, mfc="none",
            label=f"threshold {ee['threshold']:g} ({'what-if' if ee.get('what_if') else ee['chosen_on']})")
    ax.set_xlabel("mean MACs / baseline MACs (analytic)" if d.get("reference") is None else
                  "mean MACs / full-depth MACs of the early-exit net (analytic; no separate baseline)")
    ax.set_ylabel("test accuracy (%)")
    lo = min(100 * min(r["accuracy"] for r in d["sweep"]), 100 * min([s["accuracy"] for s in sm] or [1]))
    ax.set_ylim(max(lo - 1, 80) if lo >= 80 else max(lo - 1, 0), 100)  # a weak net's points stay in view
    ax.set_title("Accuracy vs compute (test split)")
    ax.legend(fontsize=7, loc="lower right")
    return save(fig, report_dir / "classifier_accuracy_vs_macs.png")


def _plot_exit_bars(report_dir: Path, rows: list[dict]) -> str:
    r = [row for row in rows if row["policy"] == "max_softmax"]
    fig, ax = figure()
    bottom = np.zeros(len(r))
    for k in range(len(r[0]["exit_fractions"])):
        vals = np.array([row["exit_fractions"][k] for row in r]) * 100
        ax.bar(range(len(r)), vals, bottom=bottom, label=f"exit {k}")
        bottom += vals
    ax.set_xticks(range(len(r)), [f"{row['threshold']:g}" for row in r], rotation=45)
    ax.set_xlabel("max-softmax threshold")
    ax.set_ylabel("share of test samples (%)")
    ax.set_title("Where samples leave, per threshold (test split)")
    ax.legend(fontsize=8)
    return save(fig, report_dir / "classifier_exit_fractions.png")


def _markdown(d: dict, plots: list[str]) -> str:
    ee, acc, macs, ref = d["early_exit"], d["accuracy"], d["macs"], d.get("reference")
    vs = "baseline" if ref is None else "full depth"
    sources = (f"MACs: early-exit net {macs['source']['early_exit']}; baseline and small networks "
               f"{macs['source']['baseline']}." if ref is None else
               f"MACs: early-exit net {macs['source']['early_exit']}. Reference: {ref['label']}; every MAC "
               "ratio below is vs its full depth.")
    lines = ["## Early-exit classifier (measured on the test split; MACs analytic)", "",
             f"Splits: {d['splits']}. {_threshold_sentence(ee)} All figures below are **test**. {sources}", "",
             md_table(["question", "answer"], _question_rows(d)), "",
             "Per-exit test accuracy: " + ", ".join(f"exit {k}: {100 * a:.2f} % ({m:,} MACs cumulative)"
                                                    for k, (a, m) in enumerate(zip(acc["per_exit"],
                                                                                   macs["per_exit_cumulative"]))), ""]
    lines += _study_lines(d) if ref is None else [ref["left_out_why"], ""]
    lines += [f"### Sweep (test accuracy; MAC ratio vs {vs})", "",
              md_table(["policy", "threshold", "accuracy", "val accuracy", "MAC ratio", "exit fractions"],
                       [[r["policy"], _threshold_cell(r), _pct(r["accuracy"]), _pct(r["val_accuracy"]), r["mac_ratio"],
                         " / ".join(f"{100 * f:.0f}%" for f in r["exit_fractions"])] for r in d["sweep"]]), ""]
    lines += [f"![{p}]({p})" for p in plots]
    return "\n".join(lines)


def _question_rows(d: dict) -> list[list[str]]:
    """The study's questions; without the study networks question 1 is answered by the full-depth reference
    and questions 5-6 (the small networks) are left out."""
    ee, acc, macs, ref = d["early_exit"], d["accuracy"], d["macs"], d.get("reference")
    first = (["1. baseline accuracy", f"{100 * acc['baseline']:.2f} % at {macs['baseline']:,} MACs"] if ref is None
             else [f"1. full-depth accuracy ({ref['label']})", f"{100 * ref['accuracy']:.2f} % at {ref['macs']:,} MACs"])
    ratio = (["4. MAC ratio vs baseline (vs full early-exit net)", f"{ee['mac_ratio']:.3f} ({ee['mac_ratio_vs_full']:.3f})"]
             if ref is None else ["4. MAC ratio vs full depth", f"{ee['mac_ratio_vs_full']:.3f}"])
    rows = [first,
            ["2. early-exit accuracy", f"{100 * acc['early_exit']:.2f} % at threshold {ee['threshold']:g}"],
            ["3. exit fractions", ", ".join(f"exit {k}: {100 * f:.1f} %" for k, f in enumerate(ee["exit_fractions"]))],
            ["3. mean confidence, exiting early / passing through",
             f"{_pct(ee['confidence_exiting_early'])} / {_pct(ee['confidence_passing_through'])} "
             f"(at exit 0: {_pct(ee['exit0_confidence_exiting_early'])} / "
             f"{_pct(ee['exit0_confidence_passing_through'])})"],
            ratio,
            ["4. sharpest MAC-ratio change in the sweep",
             f"between thresholds {d['spike']['from_threshold']:g} and {d['spike_threshold']:g} "
             f"(Δ = {d['spike']['mac_ratio_change']:.3f})"]]
    if ref is not None:
        return rows
    small = next((s for s in d["small_networks"] if s["name"] == d["small_comparison"]), None)
    return rows + [["5. small network (closest MACs)",
                    f"{small['name']}: {100 * small['accuracy']:.2f} % at {small['macs']:,} MACs" if small else "–"],
                   ["6. minimum threshold beating the small network", str(d["min_threshold_beating_small"])]]


def _study_lines(d: dict) -> list[str]:
    """The small-network comparison and the seed table (runs trained with the study networks)."""
    return ["### Does early exit beat a smaller network of the same cost?", "",
            md_table(["small network", "MAC ratio", "accuracy", "early exit at same MAC ratio", "early exit better"],
                     [[s["name"], s["mac_ratio"], _pct(s["accuracy"]), _pct(s["early_exit_accuracy_at_same_macs"]),
                       s["early_exit_better"]] for s in d["small_networks"]]), "",
            _curve_sentence(d["curve_vs_small"]), "",
            "### Threshold chosen on val, across training seeds (test figures)", "",
            md_table(["model", "threshold", "early exit", "full depth", "gap (points)", "baseline", "MAC ratio"],
                     [[s["model"], s["threshold"], _pct(s["early_exit_accuracy"]), _pct(s["full_depth_accuracy"]),
                       f"{100 * s['gap_vs_full_depth']:+.2f}", _pct(s["baseline_accuracy"]), s["mac_ratio"]]
                      for s in d["seeds"]]), ""]


def _threshold_cell(r: dict) -> str:
    """A calibrated row names the val accuracy drops (vs full depth) it was chosen for."""
    if r["policy"] != "calibrated" or not r.get("chosen_for_drops"):
        return str(r["threshold"])
    drops = ", ".join(f"{100 * d:g}" for d in r["chosen_for_drops"])
    return f"{r['threshold']} (chosen for val drop {drops} %)"


def _threshold_sentence(ee: dict) -> str:
    prov = ee.get("threshold_provenance") or {}
    run = (f"The run's threshold {ee['run_threshold']:g}: {prov.get('source')}"
           + (f" on **{prov['split']}**" if prov.get("split") else "")
           + (f" ({prov['rule']})" if prov.get("rule") else "")
           + (f", read from {prov['read_from']}" if prov.get("read_from") else "") + ".")
    if ee.get("what_if"):
        return (f"**What-if:** figures use threshold {ee['threshold']:g} given to 'tinyexit report --threshold', "
                f"not the run's policy. {run}")
    return run


def _curve_sentence(c: dict) -> str:
    if not c.get("points_compared"):
        return "No sweep point falls inside the small networks' MAC range, so the curves were not compared."
    verdict = "lies above" if c["early_exit_curve_above_small"] else "does **not** lie everywhere above"
    return (f"Along the max-softmax sweep, the early-exit curve {verdict} the small networks' curve: "
            f"{c['points_above']} of {c['points_compared']} sweep points inside the small networks' MAC range "
            "beat the small-network accuracy interpolated at the same MAC ratio.")


def _pct(v) -> str:
    return "–" if v is None else f"{100 * v:.2f} %"
