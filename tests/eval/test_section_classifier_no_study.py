"""The classifier section of a run trained without the study networks (no --study, or the own-segments API).

Such a run has predictions/early_exit.npz only: no baseline.npz, small_w*.npz or *_seed*.npz.  The report must
take the early-exit net at full depth as the reference, compute every figure it can, leave the small-network
comparison and the seed table null with one sentence saying why, and `tinyexit check` must work on it.
"""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tinyexit.cli import main

REPO = Path(__file__).resolve().parents[2]
LEFT_OUT = {"macs.baseline", "macs.small", "accuracy.baseline", "accuracy.small", "small_networks",
            "small_comparison", "seeds", "min_threshold_beating_small", "curve_vs_small"}


def _softmax_max(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(-1, keepdims=True))
    return (z / z.sum(-1, keepdims=True)).max(-1)


@pytest.fixture(scope="module")
def no_study_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("no_study") / "run"
    assert main(["train", "early-exit", "--no-study", "--epochs", "4", "--out", str(run)]) == 0
    assert sorted(p.name for p in (run / "predictions").iterdir()) == ["early_exit.npz"]
    return run


def _report(run: Path, *extra) -> tuple[dict, str]:
    assert main(["report", str(run), *extra]) == 0
    return (json.loads((run / "report" / "report.json").read_text())["classifier"],
            (run / "report" / "report.md").read_text())


@pytest.mark.slow
def test_report_without_study_uses_full_depth_as_reference(no_study_run):
    run = no_study_run
    c, md = _report(run)
    d = np.load(run / "predictions" / "early_exit.npz")
    logits, y = d["test_logits"], d["test_y"]
    cfg = json.loads((run / "config.json").read_text())["classifier"]
    cum = cfg["exit_macs"]
    per_exit = [float((logits[k].argmax(-1) == y).mean()) for k in range(logits.shape[0])]

    ref = c["reference"]
    assert ref["label"] == "early-exit net at full depth; trained without --study: no separate baseline"
    assert ref["exit"] == 2 and ref["macs"] == cum[-1] == c["macs"]["full"] and c["macs"]["per_exit_cumulative"] == cum
    assert c["accuracy"]["per_exit"] == per_exit and ref["accuracy"] == per_exit[-1]
    assert set(ref["left_out"]) == LEFT_OUT
    for key in LEFT_OUT:
        parent, _, leaf = key.rpartition(".")
        assert (c[parent] if parent else c)[leaf] is None, key
    assert c["macs"]["source"]["baseline"] is None
    # The run's own threshold (chosen on val at training, config.json): nothing exported, no what-if.
    ee = c["early_exit"]
    assert ee["threshold"] == ee["run_threshold"] == cfg["exit_policy"]["params"][0] and ee["what_if"] is False
    assert ee["chosen_on"] == "val" and ee["threshold_provenance"]["read_from"] == "config.json"
    assert abs(sum(ee["exit_fractions"]) - 1) < 1e-12
    assert ee["mac_ratio"] == ee["mac_ratio_vs_full"] == pytest.approx(np.dot(ee["exit_fractions"], cum) / cum[-1])
    # Every MAC ratio of the sweep is against full depth; the sweep's sharpest change is found.
    assert all(r["mac_ratio"] == r["mac_ratio_vs_full"] for r in c["sweep"])
    assert [r["mac_ratio"] for r in c["sweep"] if r["policy"] == "fixed_exit"] == [m / cum[-1] for m in cum]
    assert c["spike"]["mac_ratio_change"] > 0 and c["spike_threshold"] == c["spike"]["threshold"]

    assert "Reference: early-exit net at full depth; trained without --study: no separate baseline" in md
    assert "The small-network comparison and the seed table are left out" in md
    assert "re-train with 'tinyexit train early-exit --study'" in md
    assert "Does early exit beat a smaller network" not in md and "across training seeds" not in md
    assert "| 4. MAC ratio vs full depth |" in md and "### Sweep (test accuracy; MAC ratio vs full depth)" in md
    assert f"| classifier test accuracy, {ref['label']} (float) | {100 * per_exit[-1]:.2f} % |" in md
    for png in ("classifier_accuracy_vs_macs.png", "classifier_exit_fractions.png"):
        assert (run / "report" / png).stat().st_size > 10_000


@pytest.mark.slow
def test_what_if_threshold_splits_exiting_and_passing_samples(no_study_run):
    """At the median exit-0 confidence about half the samples leave at exit 0: both confidence groups exist."""
    run = no_study_run
    d = np.load(run / "predictions" / "early_exit.npz")
    logits, y = d["test_logits"], d["test_y"]
    conf = _softmax_max(logits)                                     # (E, N)
    t = float(np.round(np.median(conf[0]), 4))
    c, _ = _report(run, "--threshold", str(t))
    ee = c["early_exit"]
    assert ee["what_if"] is True and ee["threshold"] == t
    exits = np.full(y.shape, 2)
    for k in (1, 0):
        exits = np.where(conf[k] >= t, k, exits)
    assert ee["exit_fractions"] == (np.bincount(exits, minlength=3) / len(y)).tolist()
    assert 0 < ee["exit_fractions"][0] < 1
    taken = conf[exits, np.arange(len(y))]
    assert ee["confidence_exiting_early"] == pytest.approx(taken[exits < 2].mean(), abs=1e-6)
    assert ee["confidence_passing_through"] == pytest.approx(taken[exits == 2].mean(), abs=1e-6)
    assert c["accuracy"]["early_exit"] == float((logits[exits, np.arange(len(y))].argmax(-1) == y).mean())
    cum = c["macs"]["per_exit_cumulative"]
    assert ee["mac_ratio"] == pytest.approx(np.asarray(cum, float)[exits].mean() / cum[-1])
    assert main(["report", str(run)]) == 0                          # back to the run's own threshold


@pytest.mark.slow
def test_check_on_a_run_without_study(no_study_run, tmp_path, capsys):
    run = no_study_run
    _report(run)
    base = tmp_path / "baseline.json"
    assert main(["check", str(run), "--baseline", str(base), "--update"]) == 0
    metrics = json.loads(base.read_text())["metrics"]
    assert sorted(metrics) == sorted([f"classifier.accuracy.per_exit[{k}]" for k in range(3)]
                                     + [f"classifier.macs.per_exit_cumulative[{k}]" for k in range(3)]
                                     + ["classifier.accuracy.early_exit", "classifier.macs.full"])
    capsys.readouterr()
    assert main(["check", str(run), "--baseline", str(base)]) == 0
    assert "8 metrics checked, 0 moved, 0 regressions: OK" in capsys.readouterr().out


@pytest.mark.slow
def test_own_segments_example_run_reports(tmp_path):
    run = tmp_path / "own"
    subprocess.run([sys.executable, str(REPO / "examples" / "own_segments.py"), str(run), "--epochs", "1"],
                   check=True, capture_output=True, text=True)
    assert sorted(p.name for p in (run / "predictions").iterdir()) == ["early_exit.npz"]
    c, md = _report(run)
    assert c["reference"]["exit"] == 1 and c["macs"]["full"] == c["macs"]["per_exit_cumulative"][-1]
    assert c["accuracy"]["baseline"] is None and c["seeds"] is None and len(c["accuracy"]["per_exit"]) == 2
    assert "a run from your own segments (tinyexit.models.own_segments) has none" in md
