"""The main job, `tinyexit demo`: train -> report -> export -> verify -> benchmark -> report.

Only composes stage entry functions; each stage prints a line (and its own
progress bar) so a user sees where the time goes.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from tinyexit.rundir import prepare_output_dir


@dataclass(frozen=True)
class DemoConfig:
    dataset: str = "digits"
    epochs: int | None = None
    force: bool = False


def _stage(name: str, t0: float) -> None:
    print(f"[{time.time() - t0:6.1f} s] == {name}", flush=True)


def run_demo(out: str | Path, cfg: DemoConfig) -> Path:
    from dataclasses import replace

    from tinyexit.eval.report import write_report
    from tinyexit.models.data import load_dataset
    from tinyexit.models.train_run import ClassifierRunConfig, train_classifiers

    t0 = time.time()
    run = prepare_output_dir(out, cfg.force)
    splits = load_dataset(cfg.dataset)
    _stage("train: early-exit classifier, baseline, small networks", t0)
    ccfg = ClassifierRunConfig(dataset=cfg.dataset)
    if cfg.epochs:
        ccfg = replace(ccfg, train=replace(ccfg.train, epochs=cfg.epochs))
    train_classifiers(splits, ccfg, run)
    _stage("report", t0)
    write_report(run)
    _stage(f"done: {run / 'report' / 'report.md'}", t0)
    return run
