"""Scores of the binary denoiser, from the per-step tables saved at training time (no model runs here).

All likelihoods are in bits per dimension (pixel) on ±1 images:
  denoiser   negative ELBO = L_T + Σ_{t=1..T} E KL_t (the t = 1 term is −log p(x0 | x1)), summed from
             RUN/predictions/denoiser.json; every t is estimated, with fresh draws of x_t per image.
  fair coin  exactly 1 bit/dim.
  Bernoulli  independent per-pixel model fitted on train (Laplace-smoothed), exact on test.
  mixture    mixture of Bernoullis fitted by EM on train, components chosen on val, exact on test.
Sample quality: a logistic-regression classifier trained on binarized train digits labels images;
the score is the fraction labelled with confidence >= 0.9, with the class histogram (diversity).
"""
from __future__ import annotations

import math

import numpy as np

LN2 = math.log(2.0)


def flat_pm(images: np.ndarray) -> np.ndarray:
    """±1 images of any shape (N, ...) as (N, m) float64."""
    return np.asarray(images, dtype=np.float64).reshape(len(images), -1)


def bits_from_strings(rows: list[str]) -> np.ndarray:
    """'0'/'1' strings (as written in denoiser.json) → ±1 array (N, m)."""
    return np.array([[1.0 if ch == "1" else -1.0 for ch in r] for r in rows])


# ---------------------------------------------------------------- likelihood baselines

def bernoulli_fit(train_pm: np.ndarray) -> np.ndarray:
    """P(pixel = +1), Laplace-smoothed: (count + 1) / (N + 2)."""
    x = flat_pm(train_pm) > 0
    return (x.sum(0) + 1.0) / (len(x) + 2.0)


def bernoulli_bits_per_dim(p: np.ndarray, x_pm: np.ndarray) -> float:
    x = flat_pm(x_pm) > 0
    return float(-(np.where(x, np.log2(p), np.log2(1 - p))).mean())


def mixture_fit(train_pm: np.ndarray, k: int, seed: int, iters: int = 100, prior: float = 0.5) -> tuple:
    """EM for a K-component mixture of independent Bernoullis; returns (log weights, P(+1) per component).

    `prior` is a Beta(prior, prior) pseudo-count on every pixel probability (keeps logs finite).
    """
    x = (flat_pm(train_pm) > 0).astype(np.float64)
    rng = np.random.default_rng(seed)
    resp = rng.dirichlet(np.ones(k), size=len(x))           # random soft assignment to start
    for _ in range(iters):
        nk = resp.sum(0)
        mu = (resp.T @ x + prior) / (nk[:, None] + 2 * prior)
        log_w = np.log(np.maximum(nk, 1e-300) / nk.sum())  # an emptied component keeps weight ~0
        log_joint = log_w + x @ np.log(mu).T + (1 - x) @ np.log1p(-mu).T
        rel = log_joint - _logsumexp(log_joint)[:, None]
        resp = np.where(rel > -80.0, np.exp(np.maximum(rel, -80.0)), 0.0)  # no subnormals: they are slow
    return log_w, mu


def mixture_bits_per_dim(model: tuple, x_pm: np.ndarray) -> float:
    log_w, mu = model
    x = (flat_pm(x_pm) > 0).astype(np.float64)
    log_lik = _logsumexp(log_w + x @ np.log(mu).T + (1 - x) @ np.log1p(-mu).T)
    return float(-log_lik.mean() / (x.shape[1] * LN2))


def _logsumexp(a: np.ndarray) -> np.ndarray:
    top = a.max(1)
    return top + np.log(np.exp(a - top[:, None]).sum(1))


def mixture_baseline(train_pm, val_pm, test_pm, components=(10, 20, 40, 80), seed: int = 0) -> dict:
    """Mixture of Bernoullis with the number of components chosen on val; test bits/dim of the choice."""
    from threadpoolctl import threadpool_limits

    rows = []
    with threadpool_limits(1):  # small matrices: threaded BLAS only adds contention on a shared machine
        for k in components:
            model = mixture_fit(train_pm, k, seed)
            rows.append({"components": k, "val": mixture_bits_per_dim(model, val_pm),
                         "test": mixture_bits_per_dim(model, test_pm)})
    best = min(rows, key=lambda r: r["val"])
    return {"components": best["components"], "bits_per_dim": best["test"], "candidates": rows}


# ---------------------------------------------------------------- the denoiser's ELBO and exit schedule

def elbo_bits_per_dim(kl_rows: np.ndarray, prior_bits: float) -> np.ndarray:
    """Negative ELBO per row of a (rows, T) table of per-step KL terms (bits/dim)."""
    return prior_bits + np.asarray(kl_rows).sum(axis=-1)


def schedule_bits_per_dim(kl: np.ndarray, schedule: list[int], prior_bits: float) -> float:
    """Negative ELBO when step t uses exit schedule[t-1] (−1 = zero-compute, table row 0)."""
    rows = np.asarray(schedule) + 1
    return float(prior_bits + kl[rows, np.arange(kl.shape[1])].sum())


def schedule_macs(schedule: list[int], exit_macs: list[int]) -> int:
    """MACs per generated sample: the cumulative MACs of the exit used at each step (0 for −1)."""
    cost = [0] + list(exit_macs)
    return int(sum(cost[k + 1] for k in schedule))


def adaptive_summary(kl_test: np.ndarray, schedule: list[int], exit_macs: list[int], prior_bits: float) -> dict:
    T = kl_test.shape[1]
    full_bits = float(elbo_bits_per_dim(kl_test[-1], prior_bits))
    sched_bits = schedule_bits_per_dim(kl_test, schedule, prior_bits)
    full_macs, sched_macs = T * exit_macs[-1], schedule_macs(schedule, exit_macs)
    return {"macs_per_sample_full": full_macs, "macs_per_sample_schedule": sched_macs,
            "mac_saving": 1 - sched_macs / full_macs, "bits_per_dim_full": full_bits,
            "bits_per_dim_schedule": sched_bits, "bits_per_dim_increase": sched_bits / full_bits - 1,
            "steps_per_exit": {str(k): int(np.sum(np.asarray(schedule) == k)) for k in range(-1, len(exit_macs))}}


def tolerance_frontier(schedules: dict, kl_test: np.ndarray, exit_macs: list[int], prior_bits: float) -> list[dict]:
    """Schedules chosen on val at several tolerances at training time ({tolerance: schedule}), scored on
    test: the MACs-vs-quality trade-off."""
    out = []
    for tol, s in sorted(schedules.items(), key=lambda kv: float(kv[0])):
        r = adaptive_summary(kl_test, s, exit_macs, prior_bits)
        out.append({"val_tolerance": float(tol), "mac_saving": r["mac_saving"],
                    "bits_per_dim_increase": r["bits_per_dim_increase"], "schedule": list(s)})
    return out


# ---------------------------------------------------------------- sample quality

def train_scorer(train_pm: np.ndarray, train_y: np.ndarray):
    """Logistic regression on binarized train digits (deterministic, < 1 s)."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=1.0, max_iter=2000).fit(flat_pm(train_pm), train_y)


def classifier_score(scorer, images_pm: np.ndarray, threshold: float = 0.9) -> dict:
    """Fraction of images labelled with confidence >= threshold, and the class histogram of all labels."""
    proba = scorer.predict_proba(flat_pm(images_pm))
    labels = proba.argmax(1)
    hist = np.bincount(labels, minlength=proba.shape[1])
    freq = hist / hist.sum()
    nz = freq[freq > 0]
    return {"confident_fraction": float((proba.max(1) >= threshold).mean()), "threshold": threshold,
            "class_histogram": hist.tolist(), "n": len(labels),
            "class_entropy_bits": float(-(nz * np.log2(nz)).sum())}
