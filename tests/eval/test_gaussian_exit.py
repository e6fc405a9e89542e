import math

import pytest

from tinyexit.eval.gaussian_exit import monte_carlo, p_final_nonpositive, remaining_variance, study_cases


def test_remaining_variance_geometric_tail():
    assert remaining_variance(1) == 1.0
    assert remaining_variance(3, 5) == pytest.approx(2 ** -3 + 2 ** -4)
    assert remaining_variance(40) == 2.0 ** -39


@pytest.mark.parametrize("k,m", [(1, 0.5), (2, -0.3), (3, 0.2)])
def test_closed_form_matches_monte_carlo(k, m):
    n = 200_000
    mc = monte_carlo(k, m, n_layers=30, n=n, seed=k)
    exact = p_final_nonpositive(k, m, n_layers=30)
    assert abs(mc - exact) < 4 * math.sqrt(exact * (1 - exact) / n)


def test_study_cases_are_near_certain():
    a, b = study_cases()
    assert a["p_final_nonpositive"] == pytest.approx(0.5 * math.erfc(5 / math.sqrt(2)))
    assert a["p_final_nonpositive"] < 3e-7 and b["p_final_nonpositive"] < 1e-300 + 1e-100
