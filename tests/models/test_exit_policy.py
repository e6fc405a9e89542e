import numpy as np
import pytest

from tinyexit.errors import UserError
from tinyexit.exit_policy import ExitPolicy, normalized_entropy


def _logits():
    # 3 exits x 4 samples x 3 classes, built so each rule decides differently.
    confident = [9.0, 0.0, 0.0]      # softmax max ~ 0.9998
    unsure = [0.2, 0.0, 0.0]         # softmax max ~ 0.38
    other = [0.0, 9.0, 0.0]
    return np.array([
        [confident, unsure, unsure, other],
        [confident, confident, unsure, other],
        [unsure, confident, unsure, confident],
    ])


def test_max_softmax():
    assert ExitPolicy("max_softmax", (0.9,)).exit_index(_logits()).tolist() == [0, 1, 2, 0]
    assert ExitPolicy("max_softmax", (0.99999,)).exit_index(_logits()).tolist() == [2, 2, 2, 2]


def test_entropy():
    assert normalized_entropy(np.array([1.0, 1.0, 1.0])) == pytest.approx(1.0)
    assert ExitPolicy("entropy", (0.01,)).exit_index(_logits()).tolist() == [0, 1, 2, 0]
    assert ExitPolicy("entropy", (1.0,)).exit_index(_logits()).tolist() == [0, 0, 0, 0]


def test_patience():
    # sample 0: argmax 0,0 -> leaves at exit 1 with p=2; sample 3: argmax 1,1 -> exit 1; sample 2: 0,0 -> exit 1
    assert ExitPolicy("patience", (2,)).exit_index(_logits()).tolist() == [1, 1, 1, 1]
    assert ExitPolicy("patience", (1,)).exit_index(_logits()).tolist() == [0, 0, 0, 0]
    lg = _logits()
    lg[1, 2] = [0.0, 0.0, 5.0]  # sample 2 changes its mind at exit 1 -> must wait
    assert ExitPolicy("patience", (2,)).exit_index(lg).tolist() == [1, 1, 2, 1]


def test_calibrated_per_exit_thresholds():
    assert ExitPolicy("calibrated", (0.99999, 0.9)).exit_index(_logits()).tolist() == [1, 1, 2, 1]


def test_device_rule_matches_batch_rule():
    lg = _logits()
    for policy in (ExitPolicy("max_softmax", (0.9,)), ExitPolicy("patience", (2,)), ExitPolicy("entropy", (0.01,))):
        batch = policy.exit_index(lg)
        for n in range(lg.shape[1]):
            k = next(k for k in range(3) if k == 2 or policy.passes(k, list(lg[:k + 1, n])))
            assert k == batch[n]


@pytest.mark.parametrize("name,params,msg", [
    ("max_softmax", (1.5,), "out of range"), ("entropy", (-0.1,), "out of range"),
    ("patience", (0,), "whole number"), ("bogus", (0.5,), "unknown"),
])
def test_invalid_policies(name, params, msg):
    with pytest.raises(UserError, match=msg):
        ExitPolicy(name, params)
