"""Binary diffusion: every closed form against simulation or enumeration."""
import itertools
import math

import numpy as np
import pytest
import torch

from tinyexit.errors import UserError
from tinyexit.models import diffusion as d

N = 200_000  # pixels per Monte Carlo check; 5 sigma of a proportion is then <= 0.0056


def _sigma5(p: float, n: int = N) -> float:
    return 5 * math.sqrt(max(p * (1 - p), 1e-4) / n)


def test_constant_schedule_reaches_one_percent():
    s = d.Schedule.constant(50, 0.01)
    assert s.T == 50
    assert s.delta[0] == pytest.approx(0.043995, abs=1e-6)
    assert s.alpha_bar()[-1] == pytest.approx(0.01, rel=1e-12)
    assert d.Schedule.constant(20).delta[0] == pytest.approx(0.102836, abs=1e-6)
    for sched in (d.Schedule.cosine(50), d.Schedule.power(50, 0.01, 2.0)):
        assert sched.alpha_bar()[-1] == pytest.approx(0.01, rel=1e-9)
        assert all(0 < x < 0.5 for x in sched.delta)
    # power p = 1 is the constant schedule
    np.testing.assert_allclose(d.Schedule.power(50, 0.01, 1.0).delta, s.delta, rtol=1e-12)


def test_schedule_rejects_bad_values():
    with pytest.raises(UserError, match=r"must lie in \(0, 0.5\)"):
        d.Schedule((0.1, 0.5))
    with pytest.raises(UserError, match="at least one step"):
        d.Schedule(())
    with pytest.raises(UserError, match="residual in"):
        d.Schedule.constant(10, 1.5)
    assert d.Schedule.from_dict(d.Schedule.constant(5).to_dict()) == d.Schedule.constant(5)


def test_flip_and_replacement_views_agree():
    """After several steps both views give the same joint law of (Y_0, Y_t) for a mixed start."""
    gen = torch.Generator().manual_seed(0)
    x0 = torch.where(torch.rand(N, generator=gen) < 0.3, 1.0, -1.0)
    delta = (0.05, 0.2, 0.11)
    a, b = x0, x0
    for dl in delta:
        a = d.flip_step(a, dl, gen)
        b = d.replace_step(b, dl, gen)
    for x_val, y_val in itertools.product((-1.0, 1.0), repeat=2):
        pa = float(((x0 == x_val) & (a == y_val)).float().mean())
        pb = float(((x0 == x_val) & (b == y_val)).float().mean())
        assert abs(pa - pb) < 2 * _sigma5(pa), (x_val, y_val, pa, pb)
    keep = 0.5 + 0.5 * np.prod([1 - 2 * dl for dl in delta])
    assert float((a == x0).float().mean()) == pytest.approx(keep, abs=_sigma5(keep))
    assert float((b == x0).float().mean()) == pytest.approx(keep, abs=_sigma5(keep))


@pytest.mark.parametrize("schedule", [d.Schedule.constant(50), d.Schedule.power(50, 0.01, 2.0)])
@pytest.mark.parametrize("t", [1, 4, 15, 50])
def test_closed_form_sampler_matches_step_by_step(schedule, t):
    gen = torch.Generator().manual_seed(t)
    x0 = torch.where(torch.rand(N, generator=gen) < 0.5, 1.0, -1.0)
    chain = d.simulate_chain(x0, schedule, t, gen)
    direct = d.sample_xt(x0, t, schedule, gen)
    keep = d.keep_probability(schedule, t)
    assert keep == pytest.approx(0.5 + 0.5 * float(np.prod(1 - 2 * np.array(schedule.delta[:t]))))
    for y in (chain, direct):
        assert float((y == x0).float().mean()) == pytest.approx(keep, abs=_sigma5(keep))


def test_sampler_uses_exactly_two_coins_per_pixel():
    """sample_xt = a biased 'replaced?' coin with probability 1 - a_t, then a fair coin; nothing else."""
    s = d.Schedule.constant(50)
    x0 = torch.where(torch.arange(64.0) % 3 == 0, 1.0, -1.0).reshape(1, 1, 8, 8).repeat(4, 1, 1, 1)
    t = torch.tensor([1, 7, 30, 50])
    got = d.sample_xt(x0, t, s, torch.Generator().manual_seed(5))
    gen = torch.Generator().manual_seed(5)
    replaced = torch.rand(x0.shape, generator=gen)
    fair = torch.rand(x0.shape, generator=gen)
    a = torch.tensor(s.alpha_bar(), dtype=torch.float32)[t].reshape(-1, 1, 1, 1)
    want = torch.where(replaced < 1 - a, torch.where(fair < 0.5, 1.0, -1.0), x0)
    assert torch.equal(got, want)


def test_replaced_at_least_once_tends_to_one():
    s = d.Schedule((0.044,) * 300)
    probs = [d.replaced_probability(s, t) for t in (1, 10, 50, 100, 300)]
    assert probs == sorted(probs)
    assert probs[0] == pytest.approx(0.088)
    assert probs[-1] > 1 - 1e-11
    # simulation of the replacement view: fraction of pixels replaced at least once by t = 10
    gen = torch.Generator().manual_seed(3)
    ever = torch.zeros(N, dtype=torch.bool)
    for _ in range(10):
        ever |= torch.rand(N, generator=gen) < 2 * 0.044
    assert float(ever.float().mean()) == pytest.approx(probs[1], abs=_sigma5(probs[1]))


def _enumerate_posterior(x0: float, y: float, t: int, delta) -> float:
    """P(Y_{t-1}=+1 | Y_t=y, Y_0=x0) by summing the probability of every path y_1..y_t."""
    num = den = 0.0
    for path in itertools.product((-1.0, 1.0), repeat=t):
        if path[-1] != y:
            continue
        p, prev = 1.0, x0
        for s, cur in enumerate(path):
            p *= delta[s] if cur != prev else 1 - delta[s]
            prev = cur
        den += p
        prev_value = path[-2] if t >= 2 else x0
        num += p if prev_value > 0 else 0.0
    return num / den


@pytest.mark.parametrize("t", [1, 2, 3, 6])
def test_posterior_all_four_cases_match_enumeration(t):
    s = d.Schedule((0.03, 0.2, 0.07, 0.11, 0.05, 0.3))
    for x0, y in itertools.product((-1.0, 1.0), repeat=2):
        p = float(d.posterior_plus(x0, y, t, s))
        assert 0.0 <= p <= 1.0
        assert p == pytest.approx(_enumerate_posterior(x0, y, t, s.delta), abs=1e-12)
        # complementary case: flipping both x0 and y swaps the roles of +1 and -1
        assert p + float(d.posterior_plus(-x0, -y, t, s)) == pytest.approx(1.0, abs=1e-12)
    table = d.posterior_table(s)
    assert table.shape == (6, 2, 2)
    assert table[t - 1, 1, 0] == pytest.approx(float(d.posterior_plus(-1.0, 1.0, t, s)))
    # t = 1: Y_0 is known, so the posterior is x0 itself
    assert d.posterior_table(s)[0].tolist() == [[0.0, 1.0], [0.0, 1.0]]


def test_posterior_matches_simulation():
    s = d.Schedule.constant(50)
    t, gen = 12, torch.Generator().manual_seed(9)
    x0 = torch.ones(N)
    prev = d.sample_xt(x0, t - 1, s, gen)
    cur = d.flip_step(prev, s.delta[t - 1], gen)
    for y in (-1.0, 1.0):
        sel = cur == y
        emp = float((prev[sel] > 0).float().mean())
        assert emp == pytest.approx(float(d.posterior_plus(1.0, y, t, s)), abs=_sigma5(emp, int(sel.sum())))


def test_bernoulli_kl_closed_form():
    p = torch.tensor([0.0, 0.3, 0.5, 1.0, 0.9])
    q = torch.tensor([0.2, 0.3, 0.5, 0.7, 0.1])
    kl = d.bernoulli_kl(p, torch.log(q), torch.log1p(-q))
    want = [math.log(1 / 0.8), 0.0, 0.0, math.log(1 / 0.7), 0.9 * math.log(9) + 0.1 * math.log(1 / 9)]
    np.testing.assert_allclose(kl.numpy(), want, rtol=1e-5, atol=1e-7)
    assert (kl >= 0).all() and kl[1] == 0 and kl[2] == 0
    assert kl[0] > 0 and kl[4] > 0


def test_kl_terms_at_t1_is_negative_log_likelihood():
    s = d.Schedule.constant(10)
    table = torch.tensor(d.posterior_table(s), dtype=torch.float32)
    x0 = torch.tensor([[1.0, -1.0, 1.0, -1.0]])
    xt = torch.tensor([[1.0, 1.0, -1.0, -1.0]])
    z = torch.tensor([[2.0, -0.5, 0.3, -3.0]])
    got = d.kl_terms(z, x0, xt, torch.tensor([1]), table)
    nll = -(torch.nn.functional.logsigmoid(z * x0)).sum()
    assert float(got) == pytest.approx(float(nll), rel=1e-6)


def test_kl_terms_hand_case_and_zero_iff_equal():
    """At t = 5 the model's reverse step equals the truth when its x0 prediction is certain and right."""
    s = d.Schedule.constant(10)
    table = torch.tensor(d.posterior_table(s), dtype=torch.float32)
    x0, xt, t = torch.tensor([[1.0, -1.0]]), torch.tensor([[-1.0, -1.0]]), torch.tensor([5])
    sure = d.kl_terms(torch.tensor([[30.0, -30.0]]), x0, xt, t, table)
    assert float(sure) == pytest.approx(0.0, abs=1e-6)
    # an undecided x0 prediction (z = 0): the model's P is the average of the two posteriors
    p_true = [float(d.posterior_plus(1, -1, 5, s)), float(d.posterior_plus(-1, -1, 5, s))]
    q = 0.5 * (float(d.posterior_plus(1, -1, 5, s)) + float(d.posterior_plus(-1, -1, 5, s)))
    want = sum(p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q)) for p in p_true)
    got = d.kl_terms(torch.zeros(1, 2), x0, xt, t, table)
    assert float(got) == pytest.approx(want, rel=1e-5)
    assert float(got) > 0


def test_mixed_probability_equals_sum_over_x0():
    s = d.Schedule.power(50, 0.01, 2.0)
    table = torch.tensor(d.posterior_table(s), dtype=torch.float64)
    gen = torch.Generator().manual_seed(2)
    z = torch.randn(6, 5, generator=gen, dtype=torch.float64) * 3
    y = torch.where(torch.rand(6, 5, generator=gen) < 0.5, 1.0, -1.0).double()
    t = torch.tensor([1, 2, 10, 25, 49, 50])
    log_p, log_q = d.mixed_log_probs(z, y, t, table)
    pz = torch.sigmoid(z).numpy()
    for i, j in itertools.product(range(6), range(5)):
        tt, yy = int(t[i]), float(y[i, j])
        want = pz[i, j] * d.posterior_plus(1, yy, tt, s) + (1 - pz[i, j]) * d.posterior_plus(-1, yy, tt, s)
        assert math.exp(float(log_p[i, j])) == pytest.approx(float(want), abs=1e-12)
        assert math.exp(float(log_q[i, j])) == pytest.approx(1 - float(want), abs=1e-12)


def test_prior_term_and_observation_log_odds():
    s = d.Schedule.constant(50)
    k = 0.5 + 0.5 * 0.01
    assert d.prior_term(s, 64) == pytest.approx(64 * (k * math.log(2 * k) + (1 - k) * math.log(2 * (1 - k))))
    # zero-compute exit: Bayes on one pixel with prior P(x0=+1) = 0.2 and observation y at step t
    t, y = 7, 1.0
    keep = d.keep_probability(s, t)
    post = 0.2 * keep / (0.2 * keep + 0.8 * (1 - keep))
    z = d.prior_x0_logits(torch.tensor(math.log(0.2 / 0.8)), torch.tensor([[y]]), torch.tensor([t]), s)
    assert float(torch.sigmoid(z)) == pytest.approx(post, rel=1e-6)


def test_reverse_step_is_seeded():
    s = d.Schedule.constant(20)
    table = torch.tensor(d.posterior_table(s), dtype=torch.float32)
    y = torch.where(torch.arange(64.0) % 2 == 0, 1.0, -1.0).reshape(1, 1, 8, 8)
    z = torch.linspace(-3, 3, 64).reshape(1, 1, 8, 8)
    a = d.reverse_step(z, y, 10, table, torch.Generator().manual_seed(1))
    b = d.reverse_step(z, y, 10, table, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and set(a.unique().tolist()) <= {-1.0, 1.0}


def test_binarize_threshold_is_value_8_of_16():
    v = np.array([7, 8, 9, 0, 16]) / 16.0
    assert d.binarize(v).tolist() == [-1.0, 1.0, 1.0, -1.0, 1.0]
