"""The device's exit test (plain Python) against the shared rule `ExitPolicy.passes`."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from tinyexit.firmware_bridge.protocol.decide import ExitDecider
from tinyexit.exit_policy import ExitPolicy, max_softmax, normalized_entropy

QUANT = [(0.047, 18), (0.054, 2), (0.044, -37)]
logits3 = st.lists(st.lists(st.integers(-128, 127), min_size=10, max_size=10), min_size=3, max_size=3)


def _near(policy, k, deq):
    """True when the exit's score is within rounding of the threshold (either answer is right)."""
    if policy.name == "patience":
        return False
    score = normalized_entropy(deq[k]) if policy.name == "entropy" else max_softmax(deq[k])
    t = policy.params[min(k, len(policy.params) - 1)] if policy.name == "calibrated" else policy.params[0]
    return abs(score - t) < 1e-12


@settings(max_examples=400, deadline=None)
@given(logits3, st.sampled_from(["max_softmax", "entropy", "patience", "calibrated"]),
       st.floats(0.05, 0.99), st.floats(0.05, 0.99))
def test_decider_agrees_with_exit_policy(q, name, a, b):
    params = {"patience": (2.0,), "calibrated": (a, b)}.get(name, (a,))
    policy = ExitPolicy(name, params)
    deq = [(np.asarray(q[k], np.float64) - zp) * s for k, (s, zp) in enumerate(QUANT)]
    decider = ExitDecider(policy, QUANT)
    decider.reset()
    for k in range(2):
        fast = decider.passes(k, q[k])
        slow = policy.passes(k, deq[:k + 1])
        assert fast == slow or _near(policy, k, deq), (k, fast, slow)


def test_decider_on_known_values():
    policy = ExitPolicy("max_softmax", (0.5,))
    d = ExitDecider(policy, [(1.0, 0)])
    # logits (2, 0, 0): max softmax = e^2 / (e^2 + 2) = 0.787
    assert d.passes(0, [2, 0, 0]) and not d.passes(0, [0, 0, 0])
    pat = ExitDecider(ExitPolicy("patience", (2,)), [(1.0, 0)] * 3)
    pat.reset()
    assert not pat.passes(0, [3, 1]) and pat.passes(1, [5, 1])
    pat.reset()
    assert not pat.passes(0, [3, 1]) and not pat.passes(1, [1, 5])


def test_the_agent_and_host_reference_use_the_decider(fixture_run_template):
    from tinyexit.bundle import load_bundle, load_test_inputs
    from tinyexit.firmware_bridge.harness.reference import compute_reference, wire_policy

    art = load_bundle(fixture_run_template / "export" / "classifier")
    x, _ = load_test_inputs(art, limit=100)
    ref = compute_reference(art, x, art.policy)
    p = wire_policy(art.policy)
    specs = [s.outputs["logits"] for s in art.segments]
    slow = p.exit_index(np.stack([(ref.exit_logits[k].astype(np.float64) - specs[k].zero_point) * specs[k].scale
                                  for k in range(3)]))
    assert np.array_equal(ref.early_exit, slow)
    assert p.params[0] == pytest.approx(art.policy.params[0], rel=1e-7)
