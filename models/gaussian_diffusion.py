"""The Gaussian diffusion process in closed form (for completeness; no Gaussian model is trained).

  forward step   q(x_t | x_{t-1}) = N(√(1 − β_t)·x_{t-1}, β_t·I)
  any t          q(x_t | x_0)     = N(√ᾱ_t·x_0, (1 − ᾱ_t)·I),  ᾱ_t = ∏_{s≤t} (1 − β_s)
  posterior      q(x_{t-1} | x_t, x_0) = N(μ̃_t, β̃_t·I) with
                 μ̃_t = √ᾱ_{t-1}·β_t/(1 − ᾱ_t)·x_0 + √(1 − β_t)·(1 − ᾱ_{t-1})/(1 − ᾱ_t)·x_t
                 β̃_t = (1 − ᾱ_{t-1})/(1 − ᾱ_t)·β_t
The posterior follows from the joint Gaussian of (x_{t-1}, x_t) given x_0: x_t = √(1−β_t)·x_{t-1} + noise.
"""
from __future__ import annotations

import numpy as np

from tinyexit.errors import UserError


def check_betas(betas) -> np.ndarray:
    b = np.asarray(betas, dtype=np.float64)
    if b.ndim != 1 or len(b) == 0 or np.any(b <= 0) or np.any(b >= 1):
        raise UserError(f"Gaussian schedule: betas must be a non-empty list of values in (0, 1), got {b[:4]}...")
    return b


def linear_betas(T: int, beta_1: float = 1e-4, beta_T: float = 0.02) -> np.ndarray:
    """The linear schedule of Ho et al. (2020)."""
    return check_betas(np.linspace(beta_1, beta_T, T))


def alpha_bar(betas) -> np.ndarray:
    """ᾱ_0..ᾱ_T (length T+1, ᾱ_0 = 1)."""
    return np.concatenate([[1.0], np.cumprod(1.0 - check_betas(betas))])


def forward_step(x: np.ndarray, beta: float, rng: np.random.Generator) -> np.ndarray:
    """One step of q(x_t | x_{t-1})."""
    return np.sqrt(1.0 - beta) * x + np.sqrt(beta) * rng.standard_normal(x.shape)


def marginal(x0: np.ndarray, t: int, betas) -> tuple[np.ndarray, float]:
    """Mean and variance of q(x_t | x_0)."""
    a = alpha_bar(betas)[t]
    return np.sqrt(a) * np.asarray(x0, dtype=np.float64), 1.0 - a


def sample_marginal(x0: np.ndarray, t: int, betas, rng: np.random.Generator) -> np.ndarray:
    """Draw x_t from x_0 in one go."""
    mean, var = marginal(x0, t, betas)
    return mean + np.sqrt(var) * rng.standard_normal(mean.shape)


def posterior(x0: np.ndarray, xt: np.ndarray, t: int, betas) -> tuple[np.ndarray, float]:
    """Mean μ̃_t and variance β̃_t of q(x_{t-1} | x_t, x_0), for t in 1..T."""
    b = check_betas(betas)
    if not 1 <= t <= len(b):
        raise UserError(f"Gaussian posterior at t={t}: t must be in 1..{len(b)}")
    a = alpha_bar(b)
    beta, a_t, a_prev = b[t - 1], a[t], a[t - 1]
    coef_x0 = np.sqrt(a_prev) * beta / (1.0 - a_t)
    coef_xt = np.sqrt(1.0 - beta) * (1.0 - a_prev) / (1.0 - a_t)
    mean = coef_x0 * np.asarray(x0, dtype=np.float64) + coef_xt * np.asarray(xt, dtype=np.float64)
    return mean, (1.0 - a_prev) / (1.0 - a_t) * beta
