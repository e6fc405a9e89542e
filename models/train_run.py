"""Stage entry: train the classifier family of a run (early-exit, and with `study` the baseline,
small nets and extra seeds).

`train_classifiers(splits, cfg, run_dir)` writes RUN/checkpoints/<name>.pt and
RUN/predictions/<name>.npz (per-exit logits on val and test, MACs per exit) and records the
frozen config in RUN/config.json under "classifier", with the early-exit net's operating
point chosen on val ("exit_policy": name, params, provenance) and its MACs.
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
from tinyexit.models.macs import SOURCE as MACS_SOURCE
from tinyexit.rundir import load_config, update_config


@dataclass(frozen=True)
class ClassifierRunConfig:
    dataset: str = "digits"
    data_dir: str | None = None
    arch: ResNetConfig = field(default_factory=ResNetConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    small_widths: tuple[float, ...] = (0.4, 0.55, 0.75)  # width factors of the small baselines
    extra_seeds: tuple[int, ...] = (1, 2)  # early-exit + baseline retrained per seed for the seed study
    workers: int = 2                        # parallel training processes (one torch thread each)
    study: bool = True                      # False: train the early-exit net alone (no baseline, small nets, seeds)
    arch_name: str = "resnet-digits"        # preset name or TOML path (tinyexit.models.backbones)
    arch_toml: str | None = None            # the TOML file's text, when the arch came from one

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
                "extra_seeds": list(self.extra_seeds), "workers": self.workers, "study": self.study,
                "arch_name": self.arch_name, "arch_toml": self.arch_toml}

    @classmethod
    def from_dict(cls, d: dict) -> "ClassifierRunConfig":
        return cls(d["dataset"], d.get("data_dir"), ResNetConfig.from_dict(d["arch"]),
                   TrainConfig.from_dict(d["train"]), tuple(d["small_widths"]), tuple(d.get("extra_seeds", ())),
                   d.get("workers", 1), d.get("study", True), d.get("arch_name", "resnet-digits"),
                   d.get("arch_toml"))


def small_name(width: float) -> str:
    return f"small_w{round(width * 100):03d}"


def train_classifiers(splits: Splits, cfg: ClassifierRunConfig, run_dir: Path) -> list[dict]:
    """Train the early-exit net (and, with `cfg.study`, baseline, small networks and extra seeds);
    returns one summary per network."""
    run_dir = Path(run_dir)
    arch = ResNetConfig(**{**cfg.arch.to_dict(), "in_channels": splits.input_shape[0],
                           "num_classes": splits.num_classes,
                           "stages": cfg.arch.stages})
    (run_dir / "predictions").mkdir(parents=True, exist_ok=True)
    update_config(run_dir, "classifier", {**cfg.to_dict(), "arch": arch.to_dict(), "splits": splits.sizes(),
                                          "input_hw": list(splits.input_shape[1:])})
    jobs = [("early_exit", arch, cfg.train)]
    if cfg.study:
        jobs += [("baseline", arch.single_exit(), cfg.train)]
        jobs += [(small_name(w), arch.scaled(w), cfg.train) for w in cfg.small_widths]
        for s in cfg.extra_seeds:
            seeded = replace(cfg.train, seed=s)
            jobs += [(f"early_exit_seed{s}", arch, seeded), (f"baseline_seed{s}", arch.single_exit(), seeded)]
    print(f"training {len(jobs)} networks on {cfg.workers} worker(s): {', '.join(j[0] for j in jobs)}", flush=True)
    results = _run_jobs(jobs, splits, run_dir, cfg.workers)
    early = next(r for r in results if r["name"] == "early_exit")
    # The operating point flows forward from here: export copies it into the bundle.
    section = load_config(run_dir).get("classifier", {})
    update_config(run_dir, "classifier", {**section, "exit_policy": early["exit_policy"],
                                          "exit_macs": early["exit_macs"], "macs_source": MACS_SOURCE})
    return results


def _run_jobs(jobs: list, splits: Splits, run_dir: Path, workers: int) -> list[dict]:
    """Every job's epochs reach one reporter in this process (one bar, or plain lines in a log)."""
    from tinyexit.models.progress import EpochReporter, QueueListener, forward

    reporter = EpochReporter(sum(job[2].epochs for job in jobs), desc="train classifiers")
    try:
        if workers == 1 or len(jobs) == 1:
            # One network in this process, one torch thread: on 2 shared cores a second thread made a
            # resnet8-ee run 3x slower (spinning), and one thread is bit-reproducible.
            torch.set_num_threads(1)
            return [fit_and_save(*job[:2], splits, job[2], run_dir, reporter) for job in jobs]
        # Tiny 8x8 nets do not use two cores well; two single-threaded processes do.
        ctx = multiprocessing.get_context("spawn")
        with ctx.Manager() as manager:
            queue = manager.Queue()
            listener = QueueListener(queue, reporter)
            try:
                with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
                    futures = [pool.submit(_fit, job, splits, run_dir, forward(queue)) for job in jobs]
                    return [f.result() for f in futures]
            finally:
                listener.stop()
    finally:
        reporter.close()


def _fit(job, splits: Splits, run_dir: Path, progress=None) -> dict:
    torch.set_num_threads(1)  # one thread: faster for tiny nets, and bit-reproducible
    name, arch, train_cfg = job
    return fit_and_save(name, arch, splits, train_cfg, run_dir, progress)
