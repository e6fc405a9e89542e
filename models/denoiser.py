"""The tiny binary denoiser: an early-exit conv net predicting x0-logits, and its device constants.

Input (N, 2, H, W): channel 0 is the noisy ±1 image y_t, channel 1 a constant plane holding the
timestep code (`timestep_plane_values`), so the timestep enters through the first CONV_2D only —
no embedding lookup, nothing TFLite Micro lacks.  Output of every exit: r (N, 1, H, W); the
x0-logit is z = r + (zero-compute prior logit) when cfg.prior_residual (default), else z = r, and
P_θ(Y_0[j]=+1 | y_t) = σ(z[j]).  Probability arithmetic stays out of the network: a device adds
the prior and applies the closed-form mixing in float with the constants from `device_constants`.

Architecture (block vocabulary of tinyexit.models.blocks): stem ConvBN 3x3 (2 → stem_width), then
one BasicBlock per entry of `widths`, each followed by an exit head made of 1x1 convs:
ConvBN 1x1 + ReLU (→ head_hidden) then Conv2d 1x1 with bias (→ 1 channel).  Segments follow the
classifier's contract: segment k returns (logits_k, features_k) except the last, which returns logits.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from tinyexit.errors import UserError
from tinyexit.models.blocks import BasicBlock, ConvBN, Segment, exit_logits
from tinyexit.models.diffusion import Schedule, observation_log_odds, posterior_table, prior_x0_logits

ARCH = "binary_denoiser"
ENCODINGS = ("t_over_T", "alpha_bar")
SCHEDULES = ("power", "cosine", "constant")
PRIOR_EXIT = -1  # exit index of the zero-compute exit in an exit schedule


@dataclass(frozen=True)
class DenoiserConfig:
    """Architecture and diffusion process of the denoiser (everything needed to rebuild and run it)."""

    in_hw: tuple[int, int] = (8, 8)
    stem_width: int = 8
    widths: tuple[int, ...] = (8, 16, 16, 16)  # one BasicBlock each, an exit head after each
    head_hidden: int = 16
    T: int = 50
    residual: float = 0.01                     # ∏(1 − 2δ_s) at t = T: Y_T within 1 % of fair coins
    schedule: str = "power"                    # how δ_t is spread over the steps (Schedule.<name>)
    schedule_power: float = 1.5                # p of the power schedule (1 = constant δ)
    delta: tuple[float, ...] = ()              # δ_1..δ_T; empty: computed from schedule, T, residual
    timestep_encoding: str = "t_over_T"        # value of the constant input plane: t/T or a_t
    prior_residual: bool = True                # x0-logit = zero-compute prior logit + network output

    def __post_init__(self):
        object.__setattr__(self, "in_hw", tuple(int(v) for v in self.in_hw))
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        if self.schedule not in SCHEDULES:
            raise UserError(f"denoiser schedule '{self.schedule}': choose one of {', '.join(SCHEDULES)}")
        if not self.delta:
            object.__setattr__(self, "delta", self._make_schedule().delta)
        schedule = Schedule(self.delta)  # validates the δ values
        object.__setattr__(self, "delta", schedule.delta)
        if len(self.delta) != self.T:
            raise UserError(f"denoiser config: {len(self.delta)} flip probabilities for T={self.T}; give T of them")
        if not self.widths or min(self.widths + (self.stem_width, self.head_hidden)) < 1:
            raise UserError(f"denoiser config: widths {self.widths}, stem {self.stem_width}, head "
                            f"{self.head_hidden} must all be >= 1 (and at least one block)")
        if self.timestep_encoding not in ENCODINGS:
            raise UserError(f"timestep_encoding '{self.timestep_encoding}': choose one of {', '.join(ENCODINGS)}")

    def _make_schedule(self) -> Schedule:
        if self.schedule == "power":
            return Schedule.power(self.T, self.residual, self.schedule_power)
        return getattr(Schedule, self.schedule)(self.T, self.residual)

    @property
    def process(self) -> Schedule:
        """The forward process's flip probabilities δ_1..δ_T."""
        return Schedule(self.delta)

    @property
    def num_exits(self) -> int:
        return len(self.widths)

    def to_dict(self) -> dict:
        d = asdict(self)
        return {**d, "in_hw": list(self.in_hw), "widths": list(self.widths), "delta": list(self.delta)}

    @classmethod
    def from_dict(cls, d: dict) -> "DenoiserConfig":
        return cls(**{**d, "in_hw": tuple(d["in_hw"]), "widths": tuple(d["widths"]), "delta": tuple(d["delta"])})


def timestep_plane_values(cfg: DenoiserConfig) -> np.ndarray:
    """Value of input channel 1 at steps t = 1..T (float64, length T)."""
    if cfg.timestep_encoding == "alpha_bar":
        return cfg.process.alpha_bar()[1:]
    return np.arange(1, cfg.T + 1) / cfg.T


class PixelHead(nn.Module):
    """x0-logits from features: 1x1 ConvBN + ReLU, then a 1x1 conv with bias to one channel."""

    def __init__(self, c_in: int, hidden: int):
        super().__init__()
        self.pre = ConvBN(c_in, hidden, 1, 1, relu=True)
        self.out = nn.Conv2d(hidden, 1, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.pre(x))


class BinaryDenoiser(nn.Module):
    def __init__(self, cfg: DenoiserConfig):
        super().__init__()
        self.cfg = cfg
        segments, c = [], cfg.stem_width
        for k, w in enumerate(cfg.widths):
            layers = [ConvBN(2, cfg.stem_width, 3, 1, relu=True)] if k == 0 else []
            layers.append(BasicBlock(c, w))
            c = w
            segments.append(Segment(nn.Sequential(*layers), PixelHead(c, cfg.head_hidden),
                                            last=(k == cfg.num_exits - 1)))
        self.segments = nn.ModuleList(segments)
        self.register_buffer("plane", torch.tensor(timestep_plane_values(cfg), dtype=torch.float32))
        # per-pixel logit of P(x0=+1) on the training data: the zero-compute exit (set by training)
        self.register_buffer("marginal", torch.zeros(1, 1, *cfg.in_hw))

    @property
    def num_exits(self) -> int:
        return len(self.segments)

    def encode(self, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Network input for ±1 images y (N,1,H,W) at per-sample steps t (N,) in 1..T."""
        plane = self.plane[t - 1].reshape(-1, 1, 1, 1).expand_as(y)
        return torch.cat([y, plane], dim=1)

    def prior_logits(self, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x0-logits of the zero-compute exit: the per-pixel marginal updated by the pixel's own y_t."""
        return prior_x0_logits(self.marginal, y, t, self.cfg.process)

    def x0_logits(self, y: torch.Tensor, t: torch.Tensor, upto: int | None = None) -> list[torch.Tensor]:
        """x0-logits of exits 0..upto for ±1 images y at steps t: the network's output, plus the
        zero-compute prior when cfg.prior_residual (the network then learns a correction)."""
        outs = self(self.encode(y, t), upto)
        if not self.cfg.prior_residual:
            return outs
        base = self.prior_logits(y, t)
        return [base + z for z in outs]

    def forward(self, x: torch.Tensor, upto: int | None = None) -> list[torch.Tensor]:
        """Raw network outputs of exits 0..upto (all by default) for an encoded input x (N,2,H,W)."""
        last = self.num_exits - 1 if upto is None else upto
        return exit_logits(self.segments[:last + 1], x)


def build_denoiser(cfg: DenoiserConfig, seed: int, marginal_logits: np.ndarray | None = None) -> BinaryDenoiser:
    torch.manual_seed(seed)
    model = BinaryDenoiser(cfg)
    if marginal_logits is not None:
        marg = torch.tensor(np.asarray(marginal_logits), dtype=torch.float32)
        model.marginal.copy_(marg.reshape(model.marginal.shape))
    return model


def device_constants(cfg: DenoiserConfig, marginal_logits: np.ndarray,
                     exit_schedule: list[int] | None = None) -> dict:
    """Per-step constants a device needs to turn network outputs into P(Y_{t-1}=+1 | y_t) (for the manifest).

    Step t (index i = t − 1), pixel j, current value y = y_t[j] ∈ {−1, +1}, network output r[j] of
    the exit taken (dequantized to float):
        z = r[j] + marginal_logits[j] + y·observation_log_odds[i]   if prior_residual (else z = r[j])
        z = marginal_logits[j] + y·observation_log_odds[i]          for the zero-compute exit (−1)
        p = sigmoid(z)                                               = P_θ(x0[j] = +1 | y_t)
        P = p·A[i] + (1 − p)·B[i],  A, B = A_y_pos, B_y_pos if y = +1 else A_y_neg, B_y_neg
        Y_{t-1}[j] = +1 iff a uniform draw u < P, else −1.
    A and B are the closed-form posteriors P(Y_{t-1}=+1 | y_t, x0 = +1 / −1).  Sampling starts from
    fair coins at t = T and runs to t = 1; input channel 1 holds timestep_encoding.values[i] everywhere.
    """
    post = posterior_table(cfg.process)
    d = {
        "T": cfg.T,
        "delta": list(cfg.delta),
        "schedule": cfg.schedule,
        "alpha_bar": cfg.process.alpha_bar().tolist(),
        "timestep_encoding": {"kind": "constant_plane", "channel": 1, "code": cfg.timestep_encoding,
                              "values": timestep_plane_values(cfg).tolist()},
        "logits": {"prior_residual": cfg.prior_residual,
                   "formula": ("z = r + marginal_logits[j] + y*observation_log_odds[t-1]" if cfg.prior_residual
                               else "z = r"),
                   "zero_compute_formula": "z = marginal_logits[j] + y*observation_log_odds[t-1]",
                   "marginal_logits": np.asarray(marginal_logits, dtype=np.float64).ravel().tolist(),
                   "observation_log_odds": observation_log_odds(cfg.process).tolist()},
        "prior_exit": {"index": PRIOR_EXIT, "formula": "z = marginal_logits[j] + y*observation_log_odds[t-1]",
                       "observation_log_odds": observation_log_odds(cfg.process).tolist(),
                       "marginal_logits": np.asarray(marginal_logits, dtype=np.float64).ravel().tolist()},
        "mixing": {"formula": "P = sigmoid(z)*A[t-1] + (1-sigmoid(z))*B[t-1], A/B chosen by y_t[j]",
                   "A_y_neg": post[:, 0, 1].tolist(), "A_y_pos": post[:, 1, 1].tolist(),
                   "B_y_neg": post[:, 0, 0].tolist(), "B_y_pos": post[:, 1, 0].tolist()},
    }
    if exit_schedule is not None:
        d["exit_schedule"] = {"per_step": list(exit_schedule), "zero_compute_exit": PRIOR_EXIT,
                              "note": "entry t-1 is the exit used at step t"}
    return d


def choose_exit_schedule(kl: np.ndarray, exit_macs: list[int], tolerance: float, fixed_bits: float = 0.0) -> list[int]:
    """Cheapest per-step exit choice whose bits/dim stays within (1 + tolerance) × full depth.

    kl[k, t-1] is the step-t KL term in bits/dim with exit k − 1 (row 0 = the zero-compute exit,
    rows 1..E = network exits); exit_macs are the cumulative MACs of the E network exits;
    fixed_bits is the part of the bound no exit changes (L_T).  Costs and losses add over steps,
    so this is a knapsack: a Lagrangian sweep finds the cost/loss frontier, then single-step
    downgrades fill the remaining slack greedily.  Returns one exit index (−1..E−1) per step.
    """
    cost = np.concatenate([[0.0], np.asarray(exit_macs, dtype=np.float64)])
    full = kl[-1].sum() + fixed_bits
    budget = (1.0 + tolerance) * full - fixed_bits

    steps = np.arange(kl.shape[1])
    best = np.argmin(kl, axis=0)
    if kl[best, steps].sum() > budget:  # not even the best exit per step meets the budget
        return [int(k) - 1 for k in best]
    for lam in np.logspace(-3, 9, 481):  # weight of loss against normalized cost
        choice = np.argmin(cost[:, None] / cost[-1] + lam * kl, axis=0)
        if kl[choice, steps].sum() <= budget and cost[choice].sum() < cost[best].sum():
            best = choice
    return [int(k) - 1 for k in _fill_slack(best, kl, cost, budget)]


def _fill_slack(choice: np.ndarray, kl: np.ndarray, cost: np.ndarray, budget: float) -> np.ndarray:
    choice = choice.copy()
    steps = np.arange(kl.shape[1])
    while True:
        used = kl[choice, steps].sum()
        best, best_gain = None, 0.0
        for t in steps:
            for k in range(len(cost)):
                saving = cost[choice[t]] - cost[k]
                extra = kl[k, t] - kl[choice[t], t]
                if saving > 0 and used + extra <= budget and saving > best_gain:
                    best, best_gain = (t, k), saving
        if best is None:
            return choice
        choice[best[0]] = best[1]


# ---------------------------------------------------------------- evaluation and sampling (float model)

@torch.no_grad()
def kl_table(model: BinaryDenoiser, x0: torch.Tensor, draws: int, seed: int, batch: int = 2048) -> np.ndarray:
    """Mean step-t KL term in bits/dim, every exit, every step: array (E + 1, T).

    Row 0 is the zero-compute exit, row k+1 network exit k.  Each (image, t) pair gets `draws`
    fresh draws of x_t (seeded), so the sum over t is estimated at every t, not by sampling t.
    Row sums plus L_T are the negative ELBO; the t = 1 column is the reconstruction term −log p(x0|x1).
    """
    from tinyexit.models.diffusion import LN2, kl_terms, sample_xt

    model.eval()
    cfg, gen = model.cfg, torch.Generator().manual_seed(seed)
    schedule, table = cfg.process, torch.tensor(posterior_table(cfg.process), dtype=torch.float32)
    m = x0[0].numel()
    out = np.zeros((model.num_exits + 1, cfg.T))
    reps = x0.repeat(draws, 1, 1, 1)
    for t in range(1, cfg.T + 1):
        for i in range(0, len(reps), batch):
            xb = reps[i:i + batch]
            tt = torch.full((len(xb),), t, dtype=torch.long)
            xt = sample_xt(xb, tt, schedule, gen)
            logits = [model.prior_logits(xt, tt)] + model.x0_logits(xt, tt)
            for k, z in enumerate(logits):
                out[k, t - 1] += float(kl_terms(z, xb, xt, tt, table).sum())
    return out / (len(reps) * m * LN2)


@torch.no_grad()
def sample(model: BinaryDenoiser, n: int, seed: int, exit_schedule: list[int] | None = None,
           keep: tuple[int, ...] = ()) -> tuple[torch.Tensor, dict]:
    """Generate n ±1 images: m fair coins, then the learned reverse step for t = T..1 (seeded).

    exit_schedule[t-1] picks the exit at step t (−1 = zero-compute); default full depth.
    Returns the images and {t: images at step t} for the steps listed in `keep`.
    """
    from tinyexit.models.diffusion import reverse_step

    model.eval()
    cfg, gen = model.cfg, torch.Generator().manual_seed(seed)
    table = torch.tensor(posterior_table(cfg.process), dtype=torch.float32)
    exits = exit_schedule or [model.num_exits - 1] * cfg.T
    y = torch.where(torch.rand((n, 1, *cfg.in_hw), generator=gen) < 0.5, 1.0, -1.0)
    kept = {cfg.T: y} if cfg.T in keep else {}
    for t in range(cfg.T, 0, -1):
        tt = torch.full((n,), t, dtype=torch.long)
        k = exits[t - 1]
        z = model.prior_logits(y, tt) if k == PRIOR_EXIT else model.x0_logits(y, tt, upto=k)[k]
        y = reverse_step(z, y, t, table, gen)
        if t - 1 in keep:
            kept[t - 1] = y
    return y, kept
