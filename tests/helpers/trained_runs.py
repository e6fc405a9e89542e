"""Small trained run directories for tests of export and of the stages after it (a test helper: it
trains, so it lives under tests/, never in the product; `from helpers.trained_runs import ...`,
importable because tests/conftest.py puts tests/ on sys.path).

`tiny_run(base)` trains the default early-exit ResNet on digits for a few
epochs (seeded, CPU-deterministic) and a briefly trained denoiser; `exported_run(base)` also exports it.  Both are cached per process,
so every test module of a pytest session shares one export.
"""
from __future__ import annotations

import inspect
import shutil
from pathlib import Path

_CACHE: dict[tuple, Path] = {}

CLASSIFIER_EPOCHS = 8
DENOISER_EPOCHS = 3


def tiny_run(base: Path) -> Path:
    """A run directory with checkpoints/early_exit.pt, denoiser.pt and config.json; cached."""
    key = ("run",)
    if key in _CACHE and _CACHE[key].is_dir():
        return _CACHE[key]
    import torch

    from tinyexit.export.families import FAMILIES
    from tinyexit.models.classifier import ResNetConfig, StageSpec
    from tinyexit.models.data import load_digits
    from tinyexit.models.train_classifier import TrainConfig, fit_and_save
    from tinyexit.models.train_run import ClassifierRunConfig
    from tinyexit.rundir import update_config

    torch.set_num_threads(1)
    run = Path(base) / "tiny_run"
    (run / "predictions").mkdir(parents=True, exist_ok=True)
    splits = load_digits()
    # pinned (today's default), so the tests' exact op and MAC counts do not follow later default changes
    arch = ResNetConfig(stem_width=12, stages=(StageSpec(12, 1, 1), StageSpec(32, 1, 2), StageSpec(64, 1, 2)),
                        exits=(0, 1, 2), head_hidden=(32, 0, 0))
    cfg = ClassifierRunConfig(arch=arch, train=TrainConfig(epochs=CLASSIFIER_EPOCHS, seed=0))
    section = {**cfg.to_dict(), "splits": splits.sizes()}
    update_config(run, "classifier", section)
    row = fit_and_save("early_exit", cfg.arch, splits, cfg.train, run, progress=lambda *a: None)
    update_config(run, "classifier", {**section, "exit_policy": row["exit_policy"], "exit_macs": row["exit_macs"]})
    if FAMILIES["denoiser"].available():
        _tiny_denoiser(run, splits)
    _CACHE[key] = run
    return run


def _tiny_denoiser(run: Path, splits) -> None:
    from tinyexit.models.denoiser import build_denoiser
    from tinyexit.models.diffusion import binarize
    from tinyexit.models.train_denoiser import DenoiserRunConfig, marginal_logits, save_denoiser, train_loop
    from tinyexit.rundir import update_config

    cfg = DenoiserRunConfig(epochs=DENOISER_EPOCHS, ema=0.0)
    update_config(run, "denoiser", {**cfg.to_dict(), "splits": splits.sizes()})
    marg = marginal_logits(binarize(splits.train.x))
    wants_marginal = "marginal_logits" in inspect.signature(build_denoiser).parameters
    model = build_denoiser(cfg.arch, cfg.seed, marg) if wants_marginal else build_denoiser(cfg.arch, cfg.seed)
    history = train_loop(model, splits.train.x, cfg)
    save_denoiser(run / "checkpoints" / "denoiser.pt", model, cfg, marg, [cfg.arch.num_exits - 1] * cfg.arch.T,
                  history)


def exported_run(base: Path, calibration_samples: int = 200) -> Path:
    """`tiny_run` exported (ONNX, TFLite, TFLM, C; every model); cached."""
    key = ("exported", calibration_samples)
    if key in _CACHE and (_CACHE[key] / "export").is_dir():
        return _CACHE[key]
    from tinyexit.export.config import ExportConfig
    from tinyexit.export.exporter import export_run

    run = tiny_run(base)
    export_run(run, ExportConfig(formats=("onnx", "tflite", "tflm", "c"), calibration_samples=calibration_samples),
               progress=lambda msg: None)
    _CACHE[key] = run
    return run


def copy_run(run: Path, dest: Path) -> Path:
    """A private copy a test may damage."""
    shutil.copytree(run, dest)
    return dest
