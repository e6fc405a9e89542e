"""Stage entry: train the classifier family of a run (early-exit, baseline, small nets).

`train_classifiers(splits, cfg, run_dir)` writes RUN/checkpoints/<name>.pt and
RUN/predictions/<name>.npz (per-exit logits on val and test) and records the
frozen config in RUN/config.json under "classifier".
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from tinyexit.errors import UserError
from tinyexit.models.classifier import ResNetConfig
from tinyexit.models.data import Splits
from tinyexit.models.train_classifier import TrainConfig, fit_and_save
from tinyexit.rundir import update_config


@dataclass(frozen=True)
class ClassifierRunConfig:
    dataset: str = "digits"
    data_dir: str | None = None
    arch: ResNetConfig = field(default_factory=ResNetConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    small_widths: tuple[float, ...] = (0.4, 0.55, 0.75)  # width factors of the small baselines

    def __post_init__(self):
        object.__setattr__(self, "small_widths", tuple(float(w) for w in self.small_widths))
        if any(not 0 < w < 1 for w in self.small_widths):
            raise UserError(f"small_widths {self.small_widths}: each factor must be in (0, 1)")

    def to_dict(self) -> dict:
        return {"dataset": self.dataset, "data_dir": self.data_dir, "arch": self.arch.to_dict(),
                "train": self.train.to_dict(), "small_widths": list(self.small_widths)}

    @classmethod
    def from_dict(cls, d: dict) -> "ClassifierRunConfig":
        return cls(d["dataset"], d.get("data_dir"), ResNetConfig.from_dict(d["arch"]),
                   TrainConfig.from_dict(d["train"]), tuple(d["small_widths"]))


def small_name(width: float) -> str:
    return f"small_w{round(width * 100):03d}"


def train_classifiers(splits: Splits, cfg: ClassifierRunConfig, run_dir: Path) -> list[dict]:
    """Train early-exit, baseline and small networks; returns one summary per network."""
    torch.set_num_threads(1)  # tiny 8x8 nets: one thread is faster and bit-reproducible
    run_dir = Path(run_dir)
    (run_dir / "predictions").mkdir(parents=True, exist_ok=True)
    arch = ResNetConfig(**{**cfg.arch.to_dict(), "in_channels": splits.input_shape[0],
                           "num_classes": splits.num_classes,
                           "stages": cfg.arch.stages})
    update_config(run_dir, "classifier", {**cfg.to_dict(), "arch": arch.to_dict(), "splits": splits.sizes()})
    jobs = [("early_exit", arch), ("baseline", arch.single_exit())]
    jobs += [(small_name(w), arch.scaled(w)) for w in cfg.small_widths]
    return [fit_and_save(name, a, splits, cfg.train, run_dir) for name, a in jobs]
