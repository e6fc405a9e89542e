"""Gaussian diffusion: closed forms against simulation."""
import numpy as np
import pytest

from tinyexit.errors import UserError
from tinyexit.models import gaussian_diffusion as g

N = 400_000
BETAS = g.linear_betas(100, 1e-3, 0.05)


def test_alpha_bar_is_the_product():
    a = g.alpha_bar(BETAS)
    assert a[0] == 1.0 and len(a) == 101
    assert a[37] == pytest.approx(np.prod(1 - BETAS[:37]), rel=1e-12)


@pytest.mark.parametrize("t", [1, 10, 60])
def test_marginal_matches_step_by_step(t):
    rng = np.random.default_rng(t)
    x0 = np.full(N, 1.5)
    x = x0.copy()
    for s in range(t):
        x = g.forward_step(x, BETAS[s], rng)
    mean, var = g.marginal(x0, t, BETAS)
    se = np.sqrt(var / N)
    assert x.mean() == pytest.approx(mean[0], abs=5 * se)
    assert x.var() == pytest.approx(var, rel=5 * np.sqrt(2 / N))
    direct = g.sample_marginal(x0, t, BETAS, rng)
    assert direct.mean() == pytest.approx(mean[0], abs=5 * se)
    assert direct.var() == pytest.approx(var, rel=5 * np.sqrt(2 / N))


@pytest.mark.parametrize("t", [2, 25, 90])
def test_posterior_matches_simulation(t):
    """Regress simulated x_{t-1} on x_t for a fixed x_0: slope, intercept, residual variance."""
    rng = np.random.default_rng(100 + t)
    x0 = -0.7
    prev = g.sample_marginal(np.full(N, x0), t - 1, BETAS, rng)
    cur = g.forward_step(prev, BETAS[t - 1], rng)
    slope, intercept = np.polyfit(cur, prev, 1)
    resid = prev - (slope * cur + intercept)
    m0, var = g.posterior(x0, 0.0, t, BETAS)        # mean at x_t = 0 is the x0 part
    m1, _ = g.posterior(x0, 1.0, t, BETAS)          # difference is the x_t coefficient
    se_slope = np.sqrt(resid.var() / (N * cur.var()))
    se_icpt = np.sqrt(resid.var() * (1 / N + cur.mean() ** 2 / (N * cur.var())))
    assert slope == pytest.approx(m1 - m0, abs=5 * se_slope)
    assert intercept == pytest.approx(m0, abs=5 * se_icpt)
    assert resid.var() == pytest.approx(var, rel=5 * np.sqrt(2 / N))


def test_posterior_at_t1_is_x0():
    mean, var = g.posterior(np.array([0.3, -2.0]), np.array([5.0, 1.0]), 1, BETAS)
    np.testing.assert_allclose(mean, [0.3, -2.0], rtol=1e-12)
    assert var == 0.0


def test_bad_inputs():
    with pytest.raises(UserError, match="betas must be"):
        g.alpha_bar([0.1, 1.0])
    with pytest.raises(UserError, match=r"t must be in 1..100"):
        g.posterior(0.0, 0.0, 0, BETAS)
