"""Training of the early-exit classifier, the plain baseline and the small baselines.

Loss: weighted cross-entropy over exits plus self-distillation (the final exit
teaches the earlier ones with a temperature-softened KL term), so the early
exits earn their place against a smaller network of the same mean cost.
Deterministic on CPU: fixed seeds for weights, data order and augmentation.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tinyexit.errors import UserError
from tinyexit.models.checkpoint_io import read_checkpoint
from tinyexit.models.classifier import EarlyExitResNet, ResNetConfig, build_classifier
from tinyexit.models.data import Split, Splits

ARCH = "early_exit_resnet"
CHANNELS_LAST_MIN_HW = 16


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 100
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 0.05
    exit_weights: tuple[float, ...] = (1.0, 0.3, 0.3)
    distill_alpha: float = 0.5      # share of the KL-to-final-exit term in each early exit's loss
    distill_temperature: float = 3.0
    shift: int = 1                   # random +-pixel shifts (augmentation)
    rotate_deg: float = 10.0         # random rotation range (augmentation), degrees
    scale: float = 0.1               # random zoom range: 0.1 -> [0.9, 1.1]
    ema: float = 0.99                # exponential moving average of weights (0 = off); cuts seed variance
    label_smoothing: float = 0.0
    seed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "exit_weights", tuple(float(w) for w in self.exit_weights))
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise UserError(f"training config: epochs {self.epochs}, batch size {self.batch_size} and lr {self.lr} "
                            "must all be positive; pass e.g. --epochs 8")
        if not 0 <= self.distill_alpha <= 1:
            raise UserError(f"distill_alpha {self.distill_alpha}: must be in [0, 1]")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        return cls(**d)


def _augment(x: torch.Tensor, shift: int, gen: torch.Generator) -> torch.Tensor:
    """Random integer translation by up to `shift` pixels, zero fill (per sample)."""
    if shift == 0:
        return x
    n, _, h, w = x.shape
    padded = F.pad(x, (shift, shift, shift, shift))
    dy = torch.randint(0, 2 * shift + 1, (n,), generator=gen)
    dx = torch.randint(0, 2 * shift + 1, (n,), generator=gen)
    rows = (dy[:, None] + torch.arange(h)[None, :])[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w)[None, :])[:, None, None, :]
    idx_n = torch.arange(n)[:, None, None, None]
    idx_c = torch.arange(x.shape[1])[None, :, None, None]
    return padded[idx_n, idx_c, rows, cols]


def _affine(x: torch.Tensor, rotate_deg: float, scale: float, gen: torch.Generator) -> torch.Tensor:
    """Random small rotation and zoom (bilinear), for the digit strokes' natural variation."""
    if rotate_deg == 0 and scale == 0:
        return x
    n = x.shape[0]
    ang = (torch.rand(n, generator=gen) * 2 - 1) * rotate_deg * torch.pi / 180
    s = 1 + (torch.rand(n, generator=gen) * 2 - 1) * scale
    cos, sin = torch.cos(ang) / s, torch.sin(ang) / s
    theta = torch.stack([torch.stack([cos, -sin, torch.zeros(n)], 1), torch.stack([sin, cos, torch.zeros(n)], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def exit_losses(outs: list[torch.Tensor], y: torch.Tensor, cfg: TrainConfig) -> torch.Tensor:
    weights = cfg.exit_weights
    if len(weights) < len(outs):
        weights = weights + (weights[-1],) * (len(outs) - len(weights))
    final = outs[-1]
    t = cfg.distill_temperature
    teacher = F.softmax(final.detach() / t, dim=1)
    total = weights[len(outs) - 1] * F.cross_entropy(final, y, label_smoothing=cfg.label_smoothing)
    for k, z in enumerate(outs[:-1]):
        ce = F.cross_entropy(z, y, label_smoothing=cfg.label_smoothing)
        kd = F.kl_div(F.log_softmax(z / t, dim=1), teacher, reduction="batchmean") * t * t
        total = total + weights[k] * ((1 - cfg.distill_alpha) * ce + cfg.distill_alpha * kd)
    return total


def _ema_fn(decay: float):
    """EMA whose decay warms up as min(decay, (1 + n) / (10 + n)): a short run must not keep
    a large share of the random initial weights in its average."""
    def avg(averaged: torch.Tensor, current: torch.Tensor, n) -> torch.Tensor:
        d = min(decay, (1.0 + float(n)) / (10.0 + float(n)))
        return averaged * d + current * (1.0 - d)
    return avg


def train_model(model: EarlyExitResNet, train: Split, val: Split, cfg: TrainConfig, desc: str,
                progress=None) -> dict:
    """Train in place; returns per-epoch history.  `progress(job, epoch, epochs, metrics)` hears every
    epoch (default: a reporter of its own; training jobs in workers forward to the parent's)."""
    from tinyexit.models.progress import EpochReporter

    own = progress is None
    progress = EpochReporter(cfg.epochs, desc) if own else progress
    torch.use_deterministic_algorithms(True)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    x = torch.from_numpy(train.x)
    y = torch.from_numpy(train.y)
    # NHWC in memory is ~1.5x faster for convolutions at 32x32 on a CPU; tiny 8x8 inputs keep NCHW (and
    # their bit-exact history).
    fmt = torch.channels_last if min(x.shape[2:]) >= CHANNELS_LAST_MIN_HW else torch.contiguous_format
    model.to(memory_format=fmt)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = cfg.epochs * ((len(y) + cfg.batch_size - 1) // cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps, pct_start=0.15)
    history = []
    averaged = torch.optim.swa_utils.AveragedModel(model, avg_fn=_ema_fn(cfg.ema), use_buffers=True) \
        if cfg.ema else None
    for epoch in range(cfg.epochs):
        model.train()
        order = torch.randperm(len(y), generator=gen)
        total, correct, seen = 0.0, 0, 0
        for i in range(0, len(y), cfg.batch_size):
            idx = order[i:i + cfg.batch_size]
            xb = _augment(_affine(x[idx], cfg.rotate_deg, cfg.scale, gen), cfg.shift, gen).contiguous(memory_format=fmt)
            yb = y[idx]
            outs = model(xb)
            loss = exit_losses(outs, yb, cfg)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if averaged is not None:
                averaged.update_parameters(model)
            total += loss.item() * len(idx)
            correct += int((outs[-1].argmax(1) == yb).sum())
            seen += len(idx)
        evaluated = averaged.module if averaged is not None else model
        val_acc = float((predict_logits(evaluated, val.x)[-1].argmax(-1) == val.y).mean())
        history.append({"epoch": epoch, "loss": total / seen, "train_acc": correct / seen, "val_acc": val_acc})
        progress(desc, epoch, cfg.epochs, f"loss={total / seen:.3f} train_acc={correct / seen:.3f} val_acc={val_acc:.3f}")
    if own:
        progress.close()
    if averaged is not None:  # keep the weight average: lower variance across seeds
        model.load_state_dict(averaged.module.state_dict())
    model.to(memory_format=torch.contiguous_format)
    return {"history": history}


@torch.no_grad()
def predict_logits(model: EarlyExitResNet, x: np.ndarray, batch: int = 512) -> np.ndarray:
    """Logits of every exit: array (E, N, C)."""
    model.eval()
    outs = [model(torch.from_numpy(x[i:i + batch])) for i in range(0, len(x), batch)]
    return np.stack([np.concatenate([o[k].numpy() for o in outs]) for k in range(model.num_exits)])


def save_checkpoint(path: Path, model: EarlyExitResNet, train_cfg: TrainConfig, extra: dict,
                    arch_id: str = ARCH) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"arch": arch_id, "config": model.cfg.to_dict(), "train_config": train_cfg.to_dict(),
                "state_dict": model.state_dict(), **extra}, path)


def load_checkpoint(path: Path) -> EarlyExitResNet:
    """Load a classifier checkpoint; a clear error for missing, corrupt or foreign files."""
    path = Path(path)
    ckpt = read_checkpoint(path, "checkpoint", "re-run 'tinyexit train' (tinyexit train early-exit --out RUN_DIR)")
    from tinyexit.models.own_segments import SEGMENTS_ARCH, SegmentNet, SegmentsConfig

    if not isinstance(ckpt, dict) or ckpt.get("arch") not in (ARCH, SEGMENTS_ARCH):
        arch = ckpt.get("arch") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise UserError(f"{path}: unknown architecture '{arch}' (expected '{ARCH}'); re-run 'tinyexit train'")
    try:
        if ckpt["arch"] == SEGMENTS_ARCH:  # the user segment API's: modules rebuilt from their JSON spec
            model = SegmentNet(SegmentsConfig.from_dict(ckpt["config"]))
        else:
            model = EarlyExitResNet(ResNetConfig.from_dict(ckpt["config"]))
        model.load_state_dict(ckpt["state_dict"])
    except (KeyError, TypeError, RuntimeError):
        raise UserError(f"{path}: config or weights do not match the recorded architecture; "
                        "re-run 'tinyexit train'") from None
    model.eval()
    return model


def read_exit_policy(path: Path) -> dict | None:
    """The exit policy a checkpoint recorded at training time ({"name", "params", "provenance"}), or None
    for a checkpoint written before thresholds were chosen at training time."""
    ckpt = read_checkpoint(Path(path), "checkpoint", "re-run 'tinyexit train early-exit'")
    policy = ckpt.get("exit_policy") if isinstance(ckpt, dict) else None
    return dict(policy) if policy else None


def fit_and_save(name: str, arch: ResNetConfig, splits: Splits, cfg: TrainConfig, out: Path,
                 progress=None) -> dict:
    """Train one network; save its checkpoint (with the exit threshold chosen on val for a multi-exit
    net and its MACs) and its per-exit logits on val and test (with the same metadata)."""
    return fit_model_and_save(name, build_classifier(arch, cfg.seed), splits, cfg, out, progress)


def fit_model_and_save(name: str, model, splits: Splits, cfg: TrainConfig, out: Path, progress=None,
                       train: bool = True, arch_id: str = ARCH) -> dict:
    """`fit_and_save` for any network with `segments`, `num_exits` and `cfg.to_dict()` (the user segment
    API's too); `train=False` keeps the weights as given (already trained)."""
    from tinyexit.models import macs, threshold

    t0 = time.time()
    if train:
        info = train_model(model, splits.train, splits.val, cfg, desc=f"train {name}", progress=progress)
    else:
        val_acc = float((predict_logits(model, splits.val.x)[-1].argmax(-1) == splits.val.y).mean())
        info = {"history": [{"epoch": -1, "loss": float("nan"), "train_acc": float("nan"), "val_acc": val_acc}]}
    val_logits = predict_logits(model, splits.val.x)
    policy = threshold.chosen_policy(val_logits) if model.num_exits > 1 else None
    exit_macs = macs.cumulative_exit_macs(model, tuple(splits.train.x.shape[1:]))
    save_checkpoint(out / "checkpoints" / f"{name}.pt", model, cfg,
                    {"history": info["history"], "exit_policy": policy, "exit_macs": exit_macs,
                     "macs_source": macs.SOURCE}, arch_id)
    extra = {"threshold": np.float64(policy["params"][0])} if policy else {}
    np.savez(out / "predictions" / f"{name}.npz",
             val_logits=val_logits, val_y=splits.val.y,
             test_logits=predict_logits(model, splits.test.x), test_y=splits.test.y,
             exit_macs=np.asarray(exit_macs, dtype=np.int64), macs_source=np.str_(macs.SOURCE), **extra)
    return {"name": name, "seconds": time.time() - t0, "final_val_acc": info["history"][-1]["val_acc"],
            "exit_policy": policy, "exit_macs": exit_macs}
