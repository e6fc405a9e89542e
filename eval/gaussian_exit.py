"""The cascading-Gaussian toy model that motivates early exit.

X_i ~ N(0, s_i^2) independent with s_i^2 = 2^-(i-1); Y_k = X_1 + ... + X_k and
Y = sum of all X_i.  Knowing Y_k = M, the rest Y - Y_k ~ N(0, sum_{i>k} s_i^2), so
P(Y <= 0 | Y_k = M) = Phi(-M / sqrt(sum_{i>k} s_i^2)).  With infinitely many
layers the remaining variance after k layers is 2^-(k-1) (a geometric tail).
"""
from __future__ import annotations

import math

import numpy as np


def variance(i: int) -> float:
    """Variance of layer i (1-based): 2^-(i-1)."""
    return 2.0 ** -(i - 1)


def remaining_variance(k: int, n_layers: int | None = None) -> float:
    """sum_{i>k} s_i^2; n_layers=None means infinitely many layers (closed form 2^-(k-1))."""
    if n_layers is None:
        return 2.0 ** -(k - 1)
    return sum(variance(i) for i in range(k + 1, n_layers + 1))


def normal_cdf(z: float) -> float:
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


def p_final_nonpositive(k: int, m: float, n_layers: int | None = None) -> float:
    """P(Y <= 0 | Y_k = M) in closed form."""
    rest = remaining_variance(k, n_layers)
    if rest == 0:
        return 1.0 if m <= 0 else 0.0
    return normal_cdf(-m / math.sqrt(rest))


def monte_carlo(k: int, m: float, n_layers: int, n: int, seed: int = 0) -> float:
    """Estimate P(Y <= 0 | Y_k = M) by sampling the layers after k."""
    rng = np.random.default_rng(seed)
    sd = np.sqrt([variance(i) for i in range(k + 1, n_layers + 1)])
    rest = (rng.standard_normal((n, len(sd))) * sd).sum(axis=1)
    return float(np.mean(m + rest <= 0))


def study_cases() -> list[dict]:
    """The study's two cases, each with a sentence on why the answer is so certain."""
    a = p_final_nonpositive(1, 5.0)
    b = p_final_nonpositive(40, 1e-4)
    return [
        {"k": 1, "M": 5.0, "remaining_variance": remaining_variance(1), "p_final_nonpositive": a,
         "why": "After the first layer the rest of the sum has variance 1 (sd 1), so Y_1 = 5 sits five standard "
                "deviations from 0 and the later layers almost never pull it back below 0."},
        {"k": 40, "M": 1e-4, "remaining_variance": remaining_variance(40), "p_final_nonpositive": b,
         "why": f"After 40 layers the remaining variance is 2^-39 (sd {math.sqrt(remaining_variance(40)):.2e}), "
                f"so even M = 0.0001 is {1e-4 / math.sqrt(remaining_variance(40)):.0f} standard deviations "
                "above 0: the later layers are too small to change the sign."},
    ]
