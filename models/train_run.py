"""Stage entry: train the classifier family of a run (early-exit, baseline, small nets).

`train_classifiers(splits, cfg, run_dir)` writes RUN/checkpoints/<name>.pt and
RUN/predictions/<name>.npz (per-exit logits on val and test) and records the
frozen config in RUN/config.json under "classifier".
"""
from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
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
    extra_seeds: tuple[int, ...] = (1, 2)  # early-exit + baseline retrained per seed for the seed study
    workers: int = 2                        # parallel training processes (one torch thread each)

    def __post_init__(self):
        object.__setattr__(self, "small_widths", tuple(float(w) for w in self.small_widths))
        object.__setattr__(self, "extra_seeds", tuple(int(v) for v in self.extra_seeds))
        if self.workers < 1:
            raise UserError(f"workers {self.workers}: must be >= 1")
        if any(not 0 < w < 1 for w in self.small_widths):
            raise UserError(f"small_widths {self.small_widths}: each factor must be in (0, 1)")

    def to_dict(self) -> dict:
        return {"dataset": self.dataset, "data_dir": self.data_dir, "arch": self.arch.to_dict(),
                "train": self.train.to_dict(), "small_widths": list(self.small_widths),
                "extra_seeds": list(self.extra_seeds), "workers": self.workers}

    @classmethod
    def from_dict(cls, d: dict) -> "ClassifierRunConfig":
        return cls(d["dataset"], d.get("data_dir"), ResNetConfig.from_dict(d["arch"]),
                   TrainConfig.from_dict(d["train"]), tuple(d["small_widths"]), tuple(d.get("extra_seeds", ())),
                   d.get("workers", 1))


def small_name(width: float) -> str:
    return f"small_w{round(width * 100):03d}"


def train_classifiers(splits: Splits, cfg: ClassifierRunConfig, run_dir: Path) -> list[dict]:
    """Train early-exit, baseline and small networks; returns one summary per network."""
    run_dir = Path(run_dir)
    (run_dir / "predictions").mkdir(parents=True, exist_ok=True)
    arch = ResNetConfig(**{**cfg.arch.to_dict(), "in_channels": splits.input_shape[0],
                           "num_classes": splits.num_classes,
                           "stages": cfg.arch.stages})
    update_config(run_dir, "classifier", {**cfg.to_dict(), "arch": arch.to_dict(), "splits": splits.sizes(),
                                          "input_hw": list(splits.input_shape[1:])})
    jobs = [("early_exit", arch, cfg.train), ("baseline", arch.single_exit(), cfg.train)]
    jobs += [(small_name(w), arch.scaled(w), cfg.train) for w in cfg.small_widths]
    for s in cfg.extra_seeds:
        seeded = replace(cfg.train, seed=s)
        jobs += [(f"early_exit_seed{s}", arch, seeded), (f"baseline_seed{s}", arch.single_exit(), seeded)]
    print(f"training {len(jobs)} networks on {cfg.workers} worker(s): {', '.join(j[0] for j in jobs)}", flush=True)
    if cfg.workers == 1:
        return [_fit(job, splits, run_dir) for job in jobs]
    # Tiny 8x8 nets do not use two cores well; two single-threaded processes do.
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(cfg.workers, mp_context=ctx) as pool:
        futures = [pool.submit(_fit, job, splits, run_dir) for job in jobs]
        return [f.result() for f in futures]


def _fit(job, splits: Splits, run_dir: Path) -> dict:
    torch.set_num_threads(1)  # one thread: faster for tiny nets, and bit-reproducible
    name, arch, train_cfg = job
    return fit_and_save(name, arch, splits, train_cfg, run_dir)
