"""The operating threshold is chosen on val at training time (tinyexit.models.threshold)."""
import numpy as np

from tinyexit.exit_policy import ExitPolicy, gather_exit_logits
from tinyexit.models import threshold


def _val_logits(seed=1, n=400):
    """Synthetic 3-exit logits: exit k is right with probability 0.8/0.9/0.97, confidence tracks correctness."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    logits = np.zeros((3, n, 10))
    for k, p in enumerate((0.8, 0.9, 0.97)):
        right = rng.random(n) < p
        pred = np.where(right, y, (y + 1 + rng.integers(0, 9, n)) % 10)
        margin = np.where(right, rng.uniform(2, 8, n), rng.uniform(0, 2.5, n))
        logits[k, np.arange(n), pred] = margin
    return logits


def _changed_answers(logits, t):
    exits = ExitPolicy("max_softmax", (t,)).exit_index(logits)
    return int((gather_exit_logits(logits, exits).argmax(-1) != logits[-1].argmax(-1)).sum())


def test_choose_threshold_changes_no_full_depth_answer_on_val():
    val = _val_logits()
    val[0, :5] = val[2, :5] * 3  # a few confident exit-0 answers agreeing with full depth
    t = threshold.choose_threshold(val, floor=0.5)
    assert 0.5 <= t < 1
    for g in threshold.FINE_GRID:
        if g >= t:
            assert _changed_answers(val, g) == 0
    # It is the lowest such threshold: one grid step lower changes an answer (or is below the floor).
    lower = [g for g in threshold.FINE_GRID if g < t]
    assert lower and _changed_answers(val, lower[-1]) > 0
    assert threshold.choose_threshold(val) >= threshold.CONFIDENCE_FLOOR == 0.9


def test_chosen_policy_records_its_provenance():
    val = _val_logits()
    t = threshold.choose_threshold(val)
    assert threshold.chosen_policy(val) == {
        "name": "max_softmax", "params": [t],
        "provenance": {"source": "chosen at training", "split": "val", "rule": threshold.RULE, "chosen_value": [t]}}
