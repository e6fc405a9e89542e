"""Denoiser scores: baselines, ELBO sums, exit-schedule accounting, classifier score."""
import math

import numpy as np
import pytest

from tinyexit.eval import denoiser_scores as ds


def test_bernoulli_baseline_exact():
    train = np.array([[1, -1], [1, -1], [-1, -1], [1, -1]], dtype=float)
    p = ds.bernoulli_fit(train)
    np.testing.assert_allclose(p, [4 / 6, 1 / 6])
    test = np.array([[1, 1], [-1, -1]], dtype=float)
    want = -(math.log2(4 / 6) + math.log2(1 / 6) + math.log2(2 / 6) + math.log2(5 / 6)) / 4
    assert ds.bernoulli_bits_per_dim(p, test) == pytest.approx(want)
    assert ds.bernoulli_bits_per_dim(np.full(2, 0.5), test) == pytest.approx(1.0)  # the fair coin


def test_mixture_one_component_is_the_smoothed_bernoulli():
    rng = np.random.default_rng(0)
    x = np.where(rng.random((200, 16)) < np.linspace(0.05, 0.95, 16), 1.0, -1.0)
    model = ds.mixture_fit(x, 1, seed=0, prior=1.0)
    assert ds.mixture_bits_per_dim(model, x) == pytest.approx(ds.bernoulli_bits_per_dim(ds.bernoulli_fit(x), x))


def test_mixture_finds_two_prototypes():
    """Two well separated prototypes with 5 % noise: EM with 2 components approaches the true entropy."""
    rng = np.random.default_rng(1)
    protos = np.array([[1.0] * 8 + [-1.0] * 8, [-1.0] * 8 + [1.0] * 8])
    x = protos[rng.integers(0, 2, 2000)] * np.where(rng.random((2000, 16)) < 0.05, -1.0, 1.0)
    h = -(0.05 * math.log2(0.05) + 0.95 * math.log2(0.95)) + 1 / 16  # noise entropy + 1 bit for the choice
    two = ds.mixture_bits_per_dim(ds.mixture_fit(x, 2, seed=0), x)
    one = ds.mixture_bits_per_dim(ds.mixture_fit(x, 1, seed=0), x)
    assert two == pytest.approx(h, abs=0.01) and one > 0.99
    res = ds.mixture_baseline(x[:1000], x[1000:1500], x[1500:], components=(1, 2))
    assert res["components"] == 2 and [r["components"] for r in res["candidates"]] == [1, 2]


def test_elbo_schedule_and_macs_accounting():
    kl = np.array([[0.30, 0.10, 0.01],     # zero-compute
                   [0.25, 0.08, 0.01],     # exit 0
                   [0.20, 0.07, 0.01]])    # exit 1
    lt = 0.001
    assert ds.elbo_bits_per_dim(kl, lt).tolist() == pytest.approx([0.411, 0.341, 0.281])
    assert ds.schedule_bits_per_dim(kl, [1, 0, -1], lt) == pytest.approx(0.001 + 0.20 + 0.08 + 0.01)
    assert ds.schedule_macs([1, 0, -1], [100, 400]) == 500
    s = ds.adaptive_summary(kl, [1, 0, -1], [100, 400], lt)
    assert s["macs_per_sample_full"] == 1200 and s["macs_per_sample_schedule"] == 500
    assert s["mac_saving"] == pytest.approx(7 / 12)
    assert s["bits_per_dim_increase"] == pytest.approx(0.291 / 0.281 - 1)
    assert s["steps_per_exit"] == {"-1": 1, "0": 1, "1": 1}
    rows = ds.tolerance_frontier({"1.0": [-1, -1, -1], "0.0": [1, 1, -1]}, kl, [100, 400], lt)  # sorted by tolerance
    assert rows[0]["schedule"] == [1, 1, -1] and rows[0]["bits_per_dim_increase"] == pytest.approx(0.0)
    assert rows[1]["mac_saving"] == 1.0


def test_classifier_score_counts_confident_labels():
    class Fixed:  # a scorer with known probabilities
        def predict_proba(self, x):
            return np.array([[0.95, 0.05, 0.0], [0.5, 0.5, 0.0], [0.0, 0.08, 0.92], [0.1, 0.9, 0.0]])

    r = ds.classifier_score(Fixed(), np.zeros((4, 4)))
    assert r["confident_fraction"] == 0.75 and r["class_histogram"] == [2, 1, 1] and r["n"] == 4
    assert r["class_entropy_bits"] == pytest.approx(1.5)


def test_bits_from_strings():
    assert ds.bits_from_strings(["101", "000"]).tolist() == [[1, -1, 1], [-1, -1, -1]]
