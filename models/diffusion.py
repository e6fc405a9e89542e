"""Binary discrete diffusion over ±1 pixels: forward process, posterior, loss, all in closed form.

Notation (per pixel, all pixels independent):
  forward step    Y_t = Y_{t-1} flipped with probability δ_t  (t = 1..T)
  equivalent view with probability 2δ_t the pixel is replaced by a fresh fair coin, else kept
                  (a replaced pixel flips with probability ½·2δ_t = δ_t: the same one-step law)
  signal level    a_t = ∏_{s≤t} (1 − 2δ_s),  a_0 = 1
  closed form     P(Y_t = Y_0) = ½ + ½·a_t,  and 1 − a_t = P(replaced at least once by t),
                  so Y_t is sampled from Y_0 with two coins: "replaced?" (prob 1 − a_t), then a fair coin.
  posterior       P(Y_{t-1}=+1 | Y_t=y, Y_0=x) by Bayes: prior ρ = ½ + ½·a_{t-1}·x,
                  likelihood P(Y_t=y | Y_{t-1}=±1) = 1 − δ_t if y = ±1 else δ_t.
  x0 mixing       with a network's P_θ(Y_0=+1 | y) = σ(z):
                  P(Y_{t-1}=+1 | y) = σ(z)·post(y, +1) + σ(−z)·post(y, −1)  (exact per pixel, because
                  the posterior of pixel j depends on x_0 only through x_0[j]).
All log-probabilities are computed as log-sum-exp of logs, so t = 1 (a deterministic posterior)
and probabilities near 0 or 1 stay exact in float32.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from tinyexit.errors import UserError

LN2 = math.log(2.0)


@dataclass(frozen=True)
class Schedule:
    """Flip probabilities δ_1..δ_T of the forward process."""

    delta: tuple[float, ...]

    def __post_init__(self):
        object.__setattr__(self, "delta", tuple(float(d) for d in self.delta))
        if not self.delta:
            raise UserError("diffusion schedule: needs at least one step (T >= 1)")
        bad = [d for d in self.delta if not 0.0 < d < 0.5]
        if bad:
            raise UserError(f"diffusion schedule: flip probabilities {bad[:3]} must lie in (0, 0.5)")

    @classmethod
    def constant(cls, T: int, residual: float = 0.01) -> "Schedule":
        """Constant δ with (1 − 2δ)^T = residual: Y_T is within `residual` of fair coins per pixel."""
        if T < 1 or not 0.0 < residual < 1.0:
            raise UserError(f"constant schedule: need T >= 1 and residual in (0, 1), got T={T}, {residual}")
        return cls((0.5 * (1.0 - residual ** (1.0 / T)),) * T)

    @classmethod
    def cosine(cls, T: int, residual: float = 0.01) -> "Schedule":
        """a_t following a cosine curve from 1 to `residual` (gentle first steps, like Nichol & Dhariwal)."""
        if T < 1 or not 0.0 < residual < 1.0:
            raise UserError(f"cosine schedule: need T >= 1 and residual in (0, 1), got T={T}, {residual}")
        s = np.arange(T + 1) / T
        a = residual + (1.0 - residual) * np.cos(0.5 * np.pi * s) ** 2
        return cls(tuple(0.5 * (1.0 - a[1:] / a[:-1])))

    @classmethod
    def power(cls, T: int, residual: float = 0.01, p: float = 2.0) -> "Schedule":
        """log a_t = log(residual)·(t/T)^p: p = 1 is constant δ, p > 1 starts gently and ends faster."""
        if T < 1 or not 0.0 < residual < 1.0 or p <= 0:
            raise UserError(f"power schedule: need T >= 1, residual in (0, 1), p > 0; got {T}, {residual}, {p}")
        a = residual ** ((np.arange(T + 1) / T) ** p)
        return cls(tuple(0.5 * (1.0 - a[1:] / a[:-1])))

    @property
    def T(self) -> int:
        return len(self.delta)

    def alpha_bar(self) -> np.ndarray:
        """a_0..a_T (float64, length T+1)."""
        return np.concatenate([[1.0], np.cumprod(1.0 - 2.0 * np.asarray(self.delta))])

    def to_dict(self) -> dict:
        return {"T": self.T, "delta": list(self.delta)}

    @classmethod
    def from_dict(cls, d: dict) -> "Schedule":
        return cls(tuple(d["delta"]))


# ---------------------------------------------------------------- forward process

def flip_step(x: torch.Tensor, delta: float, gen: torch.Generator) -> torch.Tensor:
    """One forward step, flip view: each pixel flipped independently with probability δ."""
    flip = torch.rand(x.shape, generator=gen) < delta
    return torch.where(flip, -x, x)


def replace_step(x: torch.Tensor, delta: float, gen: torch.Generator) -> torch.Tensor:
    """One forward step, replacement view: with probability 2δ the pixel becomes a fresh fair coin."""
    replaced = torch.rand(x.shape, generator=gen) < 2.0 * delta
    coin = torch.where(torch.rand(x.shape, generator=gen) < 0.5, 1.0, -1.0).to(x.dtype)
    return torch.where(replaced, coin, x)


def simulate_chain(x0: torch.Tensor, schedule: Schedule, t: int, gen: torch.Generator) -> torch.Tensor:
    """Y_t by running t flip steps (the reference the closed-form sampler is tested against)."""
    x = x0
    for s in range(t):
        x = flip_step(x, schedule.delta[s], gen)
    return x


def keep_probability(schedule: Schedule, t: int) -> float:
    """P(Y_t[j] = Y_0[j]) = ½ + ½·∏_{s≤t}(1 − 2δ_s)."""
    return 0.5 + 0.5 * float(schedule.alpha_bar()[t])


def replaced_probability(schedule: Schedule, t: int) -> float:
    """P(pixel replaced by a fresh coin at least once in steps 1..t) = 1 − a_t (tends to 1 as t grows)."""
    return 1.0 - float(schedule.alpha_bar()[t])


def sample_xt(x0: torch.Tensor, t: torch.Tensor | int, schedule: Schedule, gen: torch.Generator) -> torch.Tensor:
    """Draw Y_t from Y_0 directly with two coins per pixel: 'replaced?' (prob 1 − a_t), then a fair coin.

    `t` is an int or a per-sample LongTensor (shape N) of steps in 0..T.
    """
    a = torch.as_tensor(schedule.alpha_bar(), dtype=x0.dtype)[torch.as_tensor(t)]
    a = a.reshape(-1, *([1] * (x0.dim() - 1))) if a.dim() else a
    replaced = torch.rand(x0.shape, generator=gen) < (1.0 - a)
    coin = torch.where(torch.rand(x0.shape, generator=gen) < 0.5, 1.0, -1.0).to(x0.dtype)
    return torch.where(replaced, coin, x0)


# ---------------------------------------------------------------- posterior

def posterior_plus(x0: np.ndarray | float, y: np.ndarray | float, t: int, schedule: Schedule) -> np.ndarray:
    """P(Y_{t-1} = +1 | Y_t = y, Y_0 = x0) for ±1 values x0, y (any of the four combinations), t in 1..T."""
    x0, y = np.asarray(x0, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if not 1 <= t <= schedule.T:
        raise UserError(f"posterior at t={t}: t must be in 1..{schedule.T}")
    rho = 0.5 + 0.5 * schedule.alpha_bar()[t - 1] * x0           # P(Y_{t-1}=+1 | x0)
    d = schedule.delta[t - 1]
    like_plus = np.where(y > 0, 1.0 - d, d)                        # P(Y_t=y | Y_{t-1}=+1)
    like_minus = np.where(y > 0, d, 1.0 - d)                       # P(Y_t=y | Y_{t-1}=-1)
    num = rho * like_plus
    return num / (num + (1.0 - rho) * like_minus)


def posterior_table(schedule: Schedule) -> np.ndarray:
    """post[t-1, iy, ix] = P(Y_{t-1}=+1 | Y_t=y, Y_0=x), index 0 for −1 and 1 for +1 (shape T×2×2)."""
    out = np.empty((schedule.T, 2, 2))
    for t in range(1, schedule.T + 1):
        for iy, y in enumerate((-1.0, 1.0)):
            for ix, x in enumerate((-1.0, 1.0)):
                out[t - 1, iy, ix] = posterior_plus(x, y, t, schedule)
    return out


def _log(p: torch.Tensor) -> torch.Tensor:
    return torch.log(p.clamp_min(0.0))  # log 0 = -inf is exact and logsumexp handles it


def mixed_log_probs(z_x0: torch.Tensor, y: torch.Tensor, t: torch.Tensor, table: torch.Tensor):
    """(log P, log (1−P)) of Y_{t-1}=+1 under the x0-mixing, for x0-logits z, current y, per-sample t.

    table is `posterior_table` as a tensor; t is a LongTensor (N,) in 1..T.
    """
    iy = (y > 0).long()
    tt = (t - 1).reshape(-1, *([1] * (y.dim() - 1))).expand_as(iy)
    a = table[tt, iy, 1]    # posterior if x0 = +1
    b = table[tt, iy, 0]    # posterior if x0 = -1
    ls_pos, ls_neg = F.logsigmoid(z_x0), F.logsigmoid(-z_x0)
    log_p = torch.logsumexp(torch.stack([_log(a) + ls_pos, _log(b) + ls_neg]), 0)
    log_q = torch.logsumexp(torch.stack([_log(1 - a) + ls_pos, _log(1 - b) + ls_neg]), 0)
    return log_p, log_q


def bernoulli_kl(p: torch.Tensor, log_q1: torch.Tensor, log_q0: torch.Tensor) -> torch.Tensor:
    """KL(Bern(p) ‖ Bern(q)) in nats, elementwise, with q given by log q and log(1 − q)."""
    return (torch.xlogy(p, p) - p * log_q1) + (torch.xlogy(1 - p, 1 - p) - (1 - p) * log_q0)


def kl_terms(z_x0: torch.Tensor, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor,
             table: torch.Tensor) -> torch.Tensor:
    """Per-sample KL(P(Y_{t-1} | Y_t, Y_0=x0) ‖ Q_θ(Y_{t-1} | Y_t)) summed over pixels, in nats.

    At t = 1 the posterior is Y_0 itself, so the term is the negative log-likelihood of x0.
    """
    iy, ix = (xt > 0).long(), (x0 > 0).long()
    tt = (t - 1).reshape(-1, *([1] * (xt.dim() - 1))).expand_as(iy)
    p_true = table[tt, iy, ix]
    log_p, log_q = mixed_log_probs(z_x0, xt, t, table)
    return bernoulli_kl(p_true, log_p, log_q).flatten(1).sum(1)


def prior_term(schedule: Schedule, m: int) -> float:
    """L_T = KL(q(Y_T | x0) ‖ fair coins) for m pixels, nats (the same for every image)."""
    k = keep_probability(schedule, schedule.T)
    return m * (LN2 + k * math.log(k) + (1 - k) * math.log(1 - k))


def reverse_step(z_x0: torch.Tensor, y: torch.Tensor, t: int, table: torch.Tensor,
                 gen: torch.Generator) -> torch.Tensor:
    """Draw Y_{t-1} from the learned reverse step at step t (x0-logits z, current ±1 image y)."""
    tt = torch.full((y.shape[0],), t, dtype=torch.long)
    log_p, _ = mixed_log_probs(z_x0, y, tt, table)
    return torch.where(torch.rand(y.shape, generator=gen) < log_p.exp(), 1.0, -1.0).to(y.dtype)


def binarize(images: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Digits in [0, 1] (pixel value / 16) → ±1: value ≥ 8 of 16, i.e. x ≥ 0.5, becomes +1."""
    return np.where(np.asarray(images) >= threshold, 1.0, -1.0).astype(np.float32)


def observation_log_odds(schedule: Schedule) -> np.ndarray:
    """L_t = log((1 + a_t)/(1 − a_t)), t = 1..T: the log-odds that x0[j] = y_t[j], from that pixel alone."""
    a = schedule.alpha_bar()[1:]
    return np.log1p(a) - np.log1p(-a)


def prior_x0_logits(marginal_logits: torch.Tensor, y: torch.Tensor, t: torch.Tensor,
                    schedule: Schedule) -> torch.Tensor:
    """Zero-compute x0-logits: per-pixel Bernoulli prior (logits b_j) updated by the pixel's own y_t[j].

    logit P(x0[j]=+1 | y[j]) = b_j + y[j]·L_t — no network, a few float operations per pixel.
    """
    L = torch.as_tensor(observation_log_odds(schedule), dtype=y.dtype)[t - 1]
    return marginal_logits.to(y.dtype) + y * L.reshape(-1, *([1] * (y.dim() - 1)))
