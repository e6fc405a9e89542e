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


def _changed_answers(p, t):
    exits = ExitPolicy("max_softmax", (t,)).exit_index(p.logits)
    return int((gather_exit_logits(p.logits, exits).argmax(-1) != p.logits[-1].argmax(-1)).sum())


def test_choose_threshold_changes_no_full_depth_answer_on_val():
    val = _preds(1)
    val.logits[0, :5] = val.logits[2, :5] * 3  # a few confident exit-0 answers agreeing with full depth
    t = study.choose_threshold(val, CUM, floor=0.5)
    assert 0.5 <= t < 1
    for g in study.FINE_GRID:
        if g >= t:
            assert _changed_answers(val, g) == 0
    # It is the lowest such threshold: one grid step lower changes an answer (or is below the floor).
    lower = [g for g in study.FINE_GRID if g < t]
    assert lower and _changed_answers(val, lower[-1]) > 0
    assert study.choose_threshold(val, CUM) >= study.CONFIDENCE_FLOOR == 0.9


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
