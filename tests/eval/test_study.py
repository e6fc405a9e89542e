import numpy as np
import pytest

from tinyexit.eval import study
from tinyexit.exit_policy import ExitPolicy, gather_exit_logits

CUM = [100, 300, 1000]


def _preds(seed=0, n=400):
    """Synthetic 3-exit logits: exit k is right with probability 0.8/0.9/0.97, confidence tracks correctness."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    logits = np.zeros((3, n, 10))
    for k, p in enumerate((0.8, 0.9, 0.97)):
        right = rng.random(n) < p
        pred = np.where(right, y, (y + 1 + rng.integers(0, 9, n)) % 10)
        margin = np.where(right, rng.uniform(2, 8, n), rng.uniform(0, 2.5, n))
        logits[k, np.arange(n), pred] = margin
    return study.Predictions(logits, y)


def test_evaluate_counts_exits_and_cost():
    p = _preds()
    r = study.evaluate(ExitPolicy("max_softmax", (0.0,)), p, CUM)
    assert r["exit_fractions"] == [1.0, 0.0, 0.0] and r["mean_macs"] == 100
    r = study.evaluate(ExitPolicy("max_softmax", (1.0,)), p, CUM)
    assert r["exit_fractions"] == [0.0, 0.0, 1.0] and r["mean_macs"] == 1000
    assert r["accuracy"] == study.accuracy(p.logits[2], p.y)


def test_calibrated_meets_target_at_least_cost():
    val = _preds(2)
    target = study.accuracy(val.logits[-1], val.y) - 0.01
    ts = study.calibrate(val, CUM, target, grid=(0.5, 0.7, 0.9, 0.99))
    r = study.evaluate(ExitPolicy("calibrated", ts), val, CUM)
    assert r["accuracy"] >= target
    for a in (0.5, 0.7, 0.9, 0.99):
        for b in (0.5, 0.7, 0.9, 0.99):
            o = study.evaluate(ExitPolicy("calibrated", (a, b)), val, CUM)
            if o["accuracy"] >= target:
                assert o["mean_macs"] >= r["mean_macs"]


def test_sweep_spike_and_min_threshold():
    rows = study.sweep(_preds(3), _preds(4), CUM, baseline_macs=900)
    ms = [r for r in rows if r["policy"] == "max_softmax"]
    assert [r["threshold"] for r in ms] == list(study.SWEEP["max_softmax"])
    # MAC ratio is monotone in the threshold.
    assert all(a["mac_ratio"] <= b["mac_ratio"] + 1e-12 for a, b in zip(ms, ms[1:]))
    spike = study.spike_threshold(rows)
    jumps = [b["mac_ratio"] - a["mac_ratio"] for a, b in zip(ms, ms[1:])]
    assert spike["mac_ratio_change"] == pytest.approx(max(jumps))
    acc = ms[5]["accuracy"] - 1e-9
    assert study.min_threshold_beating(rows, acc) == min(r["threshold"] for r in ms if r["accuracy"] > acc)
    assert study.min_threshold_beating(rows, 1.0) is None
    assert {r["policy"] for r in rows} == {"max_softmax", "entropy", "patience", "calibrated", "fixed_exit"}
    fixed = [r for r in rows if r["policy"] == "fixed_exit"]
    assert [r["mac_ratio"] for r in fixed] == [m / 900 for m in CUM]
    # The curve reaches the full-depth end point and interpolates linearly up to it.
    top = max(ms, key=lambda r: r["mac_ratio"])
    mid = (top["mac_ratio"] + 1000 / 900) / 2
    assert study.curve_accuracy_at(rows, mid) == pytest.approx((top["accuracy"] + fixed[-1]["accuracy"]) / 2)


def test_confidence_split():
    p = _preds(5)
    pol = ExitPolicy("max_softmax", (0.9,))
    c = study.confidence_split(pol, p)
    assert c["confidence_exiting_early"] >= 0.9
    assert c["exit0_confidence_passing_through"] < 0.9


def _exit0_as_good_as_full(n=200):
    """3 exits where exit 0 is right on every sample (as the demo's val split nearly is: 0.980 vs 0.977),
    exit 2 on all but 6: every accuracy drop is met by sending everything out at exit 0, and exit 0's
    confidence is low (< 0.5 on most samples), so only a grid reaching below 0.5 finds it."""
    y = np.arange(n) % 10
    logits = np.zeros((3, n, 10))
    logits[0, np.arange(n), y] = 1.0              # right, but softmax max = e / (e + 9) = 0.23
    logits[1, np.arange(n), y] = 3.0
    logits[2, np.arange(n), y] = 5.0
    wrong = np.arange(6)
    logits[2, wrong, y[wrong]] = 0.0
    logits[2, wrong, (y[wrong] + 1) % 10] = 5.0
    return study.Predictions(logits, y)


def test_calibrated_rows_are_distinct_and_say_which_drops_they_meet():
    p = _exit0_as_good_as_full()
    rows = [r for r in study.sweep(p, p, CUM, baseline_macs=900) if r["policy"] == "calibrated"]
    # Before: four identical rows (one per drop), and a grid floored at 0.5 could not reach exit 0 at all.
    assert len(rows) == 1
    (row,) = rows
    assert row["threshold"] == [0.0, 0.0] and row["exit_fractions"] == [1.0, 0.0, 0.0]
    assert row["accuracy"] == row["val_accuracy"] == 1.0 and row["mean_macs"] == 100
    assert row["chosen_for_drops"] == row["meets_drops"] == [0.0, 0.005, 0.01, 0.02]
    assert row["val_full_depth_accuracy"] == 194 / 200
    assert study.CALIBRATION_GRID[0] == 0.0 and 0.5 in study.CALIBRATION_GRID


def test_calibrated_rows_one_per_distinct_tuple():
    val, grid, drops = _preds(2), (0.0, 0.5, 0.7, 0.9, 0.99), (0.0, 0.05, 0.1, 0.2)
    rows = study.calibrated_rows(val, _preds(3), CUM, 900, drops=drops, grid=grid)
    # drops 0.05 and 0.1 choose the same tuple: one row for both
    assert [(r["threshold"], r["chosen_for_drops"], r["meets_drops"]) for r in rows] == [
        ([0.5, 0.5], [0.0], [0.0, 0.05, 0.1, 0.2]), ([0.5, 0.0], [0.05, 0.1], [0.05, 0.1, 0.2]),
        ([0.0, 0.0], [0.2], [0.2])]
    full = study.accuracy(val.logits[-1], val.y)
    assert [tuple(r["threshold"]) for r in rows] == list(dict.fromkeys(
        study.calibrate(val, CUM, full - d, grid=grid) for d in drops))
