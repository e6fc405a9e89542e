"""Report section "denoiser": likelihood, sample quality and the adaptive-depth schedule.

Reads RUN/predictions/denoiser.json (per-step KL tables, samples, strips and the exit schedules
chosen on val, saved at training time) and RUN/predictions/denoiser_data.npz (the binarized splits
the baselines fit on); no network runs here and the data set is never loaded.  Bits/dim and classifier
scores are measured on data; MACs are analytic.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from tinyexit.errors import UserError
from tinyexit.eval import denoiser_scores as ds
from tinyexit.eval.plots import figure, md_table, save
from tinyexit.eval.report import Section
from tinyexit.rundir import load_config, read_json

ORDER = 20
BITS_RATIO_TARGET = 0.75       # issue 3: bits/dim <= 0.75 x the per-pixel Bernoulli baseline
SAVING_TARGET, INCREASE_TARGET = 0.80, 0.02


def build(run_dir: Path, report_dir: Path) -> Section | None:
    if not (run_dir / "checkpoints" / "denoiser.pt").is_file():
        return None
    preds = read_json(run_dir / "predictions" / "denoiser.json")
    cfg = load_config(run_dir).get("denoiser")
    if cfg is None:
        raise UserError(f"{run_dir}/config.json: no 'denoiser' entry; re-run 'tinyexit train denoiser --out {run_dir}'")
    data = _scores(preds, _binary_splits(run_dir))
    plots = [_plot_samples(report_dir, preds), _plot_strip(report_dir, preds), _plot_per_step(report_dir, preds, data)]
    md = _markdown(data, plots)
    gen = _on_device(run_dir)
    if gen is not None:
        data["on_device_generation"] = gen
        md += _on_device_markdown(gen)
    return Section("denoiser", data, md, plots)


def _on_device(run_dir: Path) -> dict | None:
    """bench/qemu-denoiser/generation.json: the schedule's saving measured on the QEMU firmware (exact
    instructions per generated sample) beside the analytic MAC saving."""
    path = run_dir / "bench" / "qemu-denoiser" / "generation.json"
    if not path.is_file():
        return None
    g = read_json(path)
    keep = ("T", "seeds", "simulated_or_real", "analytic_mac_saving", "measured_instruction_saving",
            "measured_network_instruction_saving", "saving_gap_points", "energy_per_sample_j", "energy_source", "unit")
    out = {k: g.get(k) for k in keep}
    for name in ("full_depth", "schedule"):
        r = g[name]
        out[name] = {"macs_per_sample": r["macs_per_sample"], "instructions_per_sample": r["instructions_per_sample"],
                     "network_instructions_per_sample": r["network_instructions_per_sample"],
                     "samples": len(r["samples"])}
    gap = out["saving_gap_points"]
    out["within_5_points"] = None if gap is None else abs(gap) <= 5.0
    return out


def _on_device_markdown(g: dict) -> str:
    def pct(v):
        return "n/a" if v is None else f"{100 * v:.1f} %"

    f, s = g["full_depth"], g["schedule"]
    e = g["energy_per_sample_j"] or {}
    rows = [["full depth", f"{f['macs_per_sample']:,}", f"{f['instructions_per_sample'] or 0:,.0f}",
             f"{f['network_instructions_per_sample'] or 0:,.0f}", f"{1e3 * (e.get('full_depth') or 0):.2f}"],
            ["exit schedule", f"{s['macs_per_sample']:,}", f"{s['instructions_per_sample'] or 0:,.0f}",
             f"{s['network_instructions_per_sample'] or 0:,.0f}", f"{1e3 * (e.get('schedule') or 0):.2f}"]]
    gap = g["saving_gap_points"]
    return ("\n### Generation on the device (QEMU firmware, exact instruction counts)\n\n"
            f"{len(g['seeds'] or [])} samples per schedule, T = {g['T']}, {g['simulated_or_real']}.\n\n"
            + md_table(["", "MACs per sample (analytic)", "instructions per sample (measured)",
                        "of which network", "energy per sample, mJ (modelled)"], rows)
            + f"\n\nSaving of the schedule: analytic MACs {pct(g['analytic_mac_saving'])}, measured instructions "
            f"{pct(g['measured_instruction_saving'])} (network only {pct(g['measured_network_instruction_saving'])}); "
            f"gap {'n/a' if gap is None else f'{gap:+.1f}'} points — the sampling arithmetic (sigmoid, draws) costs "
            "the same per step at any exit, and kernels cost different instructions per MAC.\n")


def delta_fields(delta: list[float]) -> dict:
    """`delta` is the scalar δ for a constant schedule, else the list δ_1..δ_T."""
    residual = float(np.prod(1 - 2 * np.asarray(delta)))
    return {"delta": delta[0] if len(set(delta)) == 1 else list(delta), "delta_range": [min(delta), max(delta)],
            "residual_at_T": residual, "p_replaced_by_T": 1 - residual}


def _binary_splits(run_dir: Path):
    """±1 images (N, pixels) and labels of train/val/test, as training saved them."""
    path = run_dir / "predictions" / "denoiser_data.npz"
    try:
        with np.load(path, allow_pickle=False) as f:
            m = int(f["pixels"])
            names = ("train", "val", "test")
            pm = {n: np.where(np.unpackbits(f[f"{n}_bits"], axis=1)[:, :m] > 0, 1.0, -1.0) for n in names}
            return pm, {n: np.asarray(f[f"{n}_y"]) for n in names}
    except (OSError, KeyError, ValueError, EOFError) as exc:
        raise UserError(f"{path}: missing or unreadable ({type(exc).__name__}); the report's baselines need it, "
                        f"re-run 'tinyexit train denoiser --out {run_dir}'") from None


def _scores(preds: dict, binary) -> dict:
    pm, labels = binary
    kl = {k: np.asarray(v) for k, v in preds["kl_bits_per_dim"].items()}
    lt, macs = preds["prior_term_bits_per_dim"], preds["exit_macs"]
    per_exit = ds.elbo_bits_per_dim(kl["test"], lt)
    bern = ds.bernoulli_bits_per_dim(ds.bernoulli_fit(pm["train"]), pm["test"])
    mixture = ds.mixture_baseline(pm["train"], pm["val"], pm["test"])
    scorer = ds.train_scorer(pm["train"], labels["train"])
    samples = {k: ds.bits_from_strings(v) for k, v in preds["samples"].items() if k in ("full", "schedule")}
    score_full = ds.classifier_score(scorer, samples["full"])
    score_sched = ds.classifier_score(scorer, samples["schedule"])
    score_real = ds.classifier_score(scorer, pm["test"])
    adaptive = ds.adaptive_summary(kl["test"], preds["exit_schedule"], macs, lt)
    data = {
        "T": preds["T"], **delta_fields(preds["delta"]), "schedule": preds.get("schedule"),
        "macs_per_step": preds["macs_per_step"], "exit_macs": macs,
        "bits_per_dim": float(per_exit[-1]), "split": "test",
        "bits_per_dim_val": float(ds.elbo_bits_per_dim(kl["val"][-1], lt)),
        "bits_per_dim_train_subset": float(ds.elbo_bits_per_dim(kl["train"][-1], lt)),
        "bits_per_dim_per_exit": per_exit[1:].tolist(), "bits_per_dim_zero_compute": float(per_exit[0]),
        "fair_coin_bits_per_dim": 1.0, "bernoulli_baseline_bits_per_dim": bern,
        "mixture_baseline": mixture, "ratio_to_bernoulli": float(per_exit[-1]) / bern,
        "classifier_score_samples": score_full["confident_fraction"],
        "classifier_score_samples_schedule": score_sched["confident_fraction"],
        "classifier_score_real": score_real["confident_fraction"],
        "classifier": {"model": "logistic regression on binarized train digits", "threshold": 0.9,
                       "test_accuracy": float(scorer.score(ds.flat_pm(pm["test"]), labels["test"])),
                       "samples": score_full, "samples_schedule": score_sched, "real_test": score_real},
        "adaptive": {**adaptive, "schedule": preds["exit_schedule"], "chosen_on": "val",
                     "val_tolerance": preds["schedule_tolerance_val"],
                     "frontier": ds.tolerance_frontier(preds.get("frontier_schedules", {}), kl["test"], macs, lt)},
        "eval_draws": preds["eval_draws"], "train_subset_size": preds["train_subset_size"],
        "seconds": preds.get("seconds"),
    }
    data["targets"] = {
        "bits_ratio": {"target": BITS_RATIO_TARGET, "measured": data["ratio_to_bernoulli"],
                       "met": data["ratio_to_bernoulli"] <= BITS_RATIO_TARGET},
        "adaptive": {"target_saving": SAVING_TARGET, "target_increase": INCREASE_TARGET,
                     "met": (adaptive["mac_saving"] >= SAVING_TARGET
                             and adaptive["bits_per_dim_increase"] <= INCREASE_TARGET)},
    }
    return data


def _grid(images: np.ndarray, hw: tuple[int, int], cols: int) -> np.ndarray:
    rows = -(-len(images) // cols)
    h, w = hw
    canvas = np.full((rows * (h + 1) + 1, cols * (w + 1) + 1), 0.5)
    for i, img in enumerate(images):
        r, c = divmod(i, cols)
        canvas[1 + r * (h + 1):1 + r * (h + 1) + h, 1 + c * (w + 1):1 + c * (w + 1) + w] = (img.reshape(h, w) + 1) / 2
    return canvas


def _plot_samples(report_dir: Path, preds: dict) -> str:
    hw = tuple(preds["image_hw"])
    fig, ax = figure(8.0, 4.4)
    fig.clf()
    for i, (key, title) in enumerate((("full", "full depth"), ("schedule", "exit schedule"))):
        a = fig.add_subplot(1, 2, i + 1)
        a.imshow(_grid(ds.bits_from_strings(preds["samples"][key][:100]), hw, 10), cmap="gray_r", vmin=0, vmax=1)
        a.set_title(f"generated digits, {title}")
        a.axis("off")
    return save(fig, report_dir / "denoiser_samples.png")


def _plot_strip(report_dir: Path, preds: dict) -> str:
    hw, strip = tuple(preds["image_hw"]), preds["strip"]
    fig, ax = figure(8.0, 2.6)
    fig.clf()
    for row, key in enumerate(("forward", "reverse")):
        for i, (t, img) in enumerate(zip(strip["t"], ds.bits_from_strings(strip[key]))):
            a = fig.add_subplot(2, len(strip["t"]), row * len(strip["t"]) + i + 1)
            a.imshow((img.reshape(hw) + 1) / 2, cmap="gray_r", vmin=0, vmax=1)
            a.set_xticks([]), a.set_yticks([])
            if row == 0:
                a.set_title(f"t={t}", fontsize=8)
            if i == 0:
                a.set_ylabel("forward" if key == "forward" else "sampled", fontsize=8)
    fig.suptitle("test image diffused t = 0 → T (top); a generated sample at the same steps (bottom)", fontsize=9)
    return save(fig, report_dir / "denoiser_diffusion_strip.png")


def _plot_per_step(report_dir: Path, preds: dict, data: dict) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kl = np.asarray(preds["kl_bits_per_dim"]["test"])
    t = np.arange(1, kl.shape[1] + 1)
    sched = np.asarray(preds["exit_schedule"]) + 1
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6.4, 6.4), dpi=110, sharex=True)
    names = ["zero-compute exit (per-pixel prior)"]
    names += [f"exit {k} ({m:,} MACs)" for k, m in enumerate(preds["exit_macs"])]
    for k, name in enumerate(names):
        style = "k:" if k == 0 else "-"
        top.plot(t, kl[k], style, lw=1.2, label=name)
        if k < len(kl) - 1:
            bottom.plot(t, kl[k] - kl[-1], style, lw=1.2, label=name)
    top.plot(t, kl[sched, t - 1], "o", ms=3, mfc="none", color="tab:red", label="exit schedule (chosen on val)")
    bottom.plot(t, kl[sched, t - 1] - kl[-1], "o", ms=3, mfc="none", color="tab:red")
    top.set_yscale("log")
    top.set_ylabel("KL term at step t (bits/dim)")
    top.set_title(f"Where the information is (test): bits/dim per step, total {data['bits_per_dim']:.4f}")
    top.legend(fontsize=7)
    bottom.axhline(0, color="gray", lw=0.8)
    bottom.set_ylabel("extra bits/dim vs full depth")
    bottom.set_xlabel("step t")
    for ax in (top, bottom):
        ax.grid(True, alpha=0.3)
    return save(fig, report_dir / "denoiser_bits_per_step.png")


def _markdown(d: dict, plots: list[str]) -> str:
    a, c, mix = d["adaptive"], d["classifier"], d["mixture_baseline"]
    bern = d["bernoulli_baseline_bits_per_dim"]
    delta = f"{d['delta']:.4f}" if isinstance(d["delta"], float) else \
        f"{d['schedule']} schedule, δ_t from {d['delta_range'][0]:.4f} to {d['delta_range'][1]:.4f}"
    lines = [
        "## Binary diffusion denoiser (bits/dim measured on the test split; MACs analytic)", "",
        f"T = {d['T']}, {delta}; ∏(1 − 2δ_t) = {d['residual_at_T']:.4f} at t = T (≤ 0.01: Y_T is within 1 % "
        f"of fair coins; a pixel has been replaced by a fresh coin at least once with probability "
        f"{d['p_replaced_by_T']:.3f}). Full network: {d['macs_per_step']:,} MACs per reverse step.", "",
        md_table(["model", "bits/dim (test)", "× per-pixel Bernoulli"], [
            ["fair coin", 1.0, 1.0 / bern],
            ["per-pixel Bernoulli (fit on train)", bern, 1.0],
            [f"mixture of {mix['components']} Bernoullis (EM, K chosen on val)", mix["bits_per_dim"],
             mix["bits_per_dim"] / bern],
            ["denoiser, full depth (negative ELBO)", d["bits_per_dim"], d["ratio_to_bernoulli"]],
            ["denoiser, exit schedule", a["bits_per_dim_schedule"], a["bits_per_dim_schedule"] / bern],
        ]), "",
        f"Target ≤ {BITS_RATIO_TARGET} × Bernoulli: **{'met' if d['targets']['bits_ratio']['met'] else 'not met'}** "
        f"({d['ratio_to_bernoulli']:.3f}). Same bound on val: {d['bits_per_dim_val']:.4f}; "
        f"on {d['train_subset_size']} train images "
        f"(1 draw): {d['bits_per_dim_train_subset']:.4f} — the gap is the generalization gap. Per exit (test): "
        + ", ".join(f"exit {k}: {v:.4f}" for k, v in enumerate(d["bits_per_dim_per_exit"])) + ".", "",
        "### Sample quality", "",
        md_table(["images", "confident (≥ 0.9)", "class histogram 0..9", "class entropy (bits)"], [
            ["generated, full depth", c["samples"]["confident_fraction"], c["samples"]["class_histogram"],
             c["samples"]["class_entropy_bits"]],
            ["generated, exit schedule", c["samples_schedule"]["confident_fraction"],
             c["samples_schedule"]["class_histogram"], c["samples_schedule"]["class_entropy_bits"]],
            ["real test images", c["real_test"]["confident_fraction"], c["real_test"]["class_histogram"],
             c["real_test"]["class_entropy_bits"]],
        ]), "",
        f"Scorer: {c['model']}, test accuracy {100 * c['test_accuracy']:.1f} %.", "",
        "### Adaptive depth: an exit per step (schedule chosen on val, scored on test)", "",
        md_table(["", "MACs per generated sample", "bits/dim"], [
            ["full depth every step", f"{a['macs_per_sample_full']:,}", a["bits_per_dim_full"]],
            ["exit schedule", f"{a['macs_per_sample_schedule']:,}", a["bits_per_dim_schedule"]],
        ]), "",
        f"MAC saving {100 * a['mac_saving']:.1f} % at {100 * a['bits_per_dim_increase']:+.2f} % bits/dim "
        f"(val tolerance {100 * a['val_tolerance']:.1f} %); target ≥ {100 * SAVING_TARGET:.0f} % at ≤ "
        f"{100 * INCREASE_TARGET:.0f} %: **{'met' if d['targets']['adaptive']['met'] else 'not met'}**. "
        f"Steps per exit (−1 = zero-compute): {a['steps_per_exit']}. Schedule (t = 1..T): {a['schedule']}.", "",
        md_table(["val tolerance", "MAC saving (test)", "bits/dim increase (test)"],
                 [[f"{100 * r['val_tolerance']:.1f} %", f"{100 * r['mac_saving']:.1f} %",
                   f"{100 * r['bits_per_dim_increase']:+.2f} %"] for r in a["frontier"]]), "",
    ]
    lines += [f"![{p}]({p})" for p in plots]
    return "\n".join(lines)
