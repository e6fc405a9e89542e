"""The model families the exporter knows: where their checkpoint is, how to load it, which data to use.

Everything else in export/ is generic over the segment contract; a family only
supplies its network, its calibration inputs, its test set and what its
manifest must add for a device (the denoiser's schedule and encodings).
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from tinyexit.errors import UserError
from tinyexit.models.checkpoint_io import check_zip_crcs
from tinyexit.rundir import load_config


@dataclass
class FamilyData:
    calib: np.ndarray            # float NCHW inputs of segment 0 (training images)
    test_x: np.ndarray           # float NCHW
    test_y: np.ndarray           # labels (classifier) or clean targets (denoiser)
    float_input_range: tuple[float, float]
    manifest_extra: dict = field(default_factory=dict)
    test_images: np.ndarray | None = None   # the raw test images, when test_x is derived from them
    test_t: np.ndarray | None = None        # denoiser: the step of each test input


@dataclass(frozen=True)
class Family:
    name: str
    checkpoint: str                              # relative to the run directory
    load: Callable[[Path], object]
    data: Callable[[Path, object, int], FamilyData]
    available: Callable[[], bool] = lambda: True


def check_checkpoint(path: Path, retrain: str) -> None:
    """A flipped bit in the weights is caught by the checkpoint's zip CRCs (models.checkpoint_io)."""
    check_zip_crcs(path, retrain)


def _load_classifier(path: Path):
    from tinyexit.models.train_classifier import load_checkpoint

    check_checkpoint(path, "re-run 'tinyexit train early-exit' or restore the file")
    return load_checkpoint(path)


def _classifier_data(run: Path, model, calib_n: int) -> FamilyData:
    from tinyexit.models.data import load_dataset

    cfg = load_config(run).get("classifier")
    if not cfg:
        raise UserError(f"{run}/config.json: no 'classifier' section; re-run 'tinyexit train early-exit --out {run}'")
    splits = load_dataset(cfg["dataset"], cfg.get("data_dir"))
    return FamilyData(splits.train.x[:calib_n], splits.test.x, splits.test.y, (0.0, 1.0))


def _denoiser_available() -> bool:
    return importlib.util.find_spec("tinyexit.models.denoiser") is not None


def _load_denoiser(path: Path):
    from tinyexit.export import denoiser_family

    check_checkpoint(path, "re-run 'tinyexit train denoiser' or restore the file")
    return denoiser_family.load(path)


def _denoiser_data(run: Path, model, calib_n: int) -> FamilyData:
    from tinyexit.export import denoiser_family

    return denoiser_family.data(run, model, calib_n)


FAMILIES = {
    "classifier": Family("classifier", "checkpoints/early_exit.pt", _load_classifier, _classifier_data),
    "denoiser": Family("denoiser", "checkpoints/denoiser.pt", _load_denoiser, _denoiser_data, _denoiser_available),
}


def select(run: Path, wanted: tuple[str, ...]) -> list[Family]:
    """The families to export: the requested ones (each must have its checkpoint) or all present."""
    if wanted:
        fams = [FAMILIES[name] for name in wanted]
        for fam in fams:
            if not (run / fam.checkpoint).is_file():
                raise UserError(f"{run / fam.checkpoint}: checkpoint missing; train it first "
                                f"('tinyexit train {'early-exit' if fam.name == 'classifier' else 'denoiser'} "
                                f"--out {run}')")
            if not fam.available():
                raise UserError(f"{fam.name}: this tinyexit has no exporter support for it yet (models/denoiser.py "
                                "missing); upgrade tinyexit")
        return fams
    fams = [f for f in FAMILIES.values() if (run / f.checkpoint).is_file() and f.available()]
    if not fams:
        raise UserError(f"{run}/checkpoints: no checkpoint to export (expected early_exit.pt or denoiser.pt); "
                        f"run 'tinyexit train early-exit --out {run}' first")
    return fams
