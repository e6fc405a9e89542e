"""Checks every loaded data set passes before anything is written, and the split rule for user data.

Each check raises one UserError line naming the file, the array and the fix; a training run never
starts on NaN pixels or impossible labels (it would train to loss=nan, or fail inside a worker).
"""
from __future__ import annotations

import sys

import numpy as np

from tinyexit.errors import UserError

MIN_VAL = 300           # below this many val images the exit threshold (zero disagreement on val) is a guess
SPLIT_FRACTIONS = (0.6, 0.75)   # train = [0, 60 %), val = [60 %, 75 %), test = [75 %, 100 %)


def check_pixels(x: np.ndarray, where: str) -> np.ndarray:
    """float32 in [0, 1] from uint8 0..255 (or any integer array within 0..255) or float in [0, 1]."""
    kind = x.dtype.kind
    if kind not in "iuf":
        raise UserError(f"{where}: pixels have dtype {x.dtype}, not numbers; save uint8 0..255 or float32 in [0, 1]")
    if kind == "f":
        finite = np.isfinite(x)
        if not finite.all():
            n = int((~finite).sum())
            raise UserError(f"{where}: {n} pixel(s) are NaN or infinite; clean or drop those images")
        lo, hi = float(x.min()), float(x.max())
        if lo < 0.0 or hi > 1.0:
            raise UserError(f"{where}: float pixels span [{lo:g}, {hi:g}], outside [0, 1]; scale them to [0, 1] "
                            "or save uint8 0..255")
        return x.astype(np.float32)
    lo, hi = int(x.min()), int(x.max())
    if lo < 0 or hi > 255:
        raise UserError(f"{where}: integer pixels span [{lo}, {hi}], outside 0..255; save uint8 0..255")
    return x.astype(np.float32) / 255.0


def check_labels(y: np.ndarray, where: str, num_classes: int | None) -> np.ndarray:
    """int64 labels in 0..num_classes-1 (integral floats accepted); anything else is one clear line."""
    y = np.asarray(y)
    if y.ndim != 1:
        raise UserError(f"{where}: labels must be one integer per image (shape (N,)), got shape {y.shape}")
    if y.dtype.kind not in "iuf" or y.dtype.kind == "b":
        raise UserError(f"{where}: labels have dtype {y.dtype}; save integer class indices 0..K-1")
    if y.dtype.kind == "f":
        if not np.isfinite(y).all() or (y != np.round(y)).any():
            bad = y[~np.isfinite(y) | (y != np.round(y))][0]
            raise UserError(f"{where}: label {float(bad):g} is not a whole number; labels are class indices 0..K-1")
    if len(y) and y.min() < 0:
        raise UserError(f"{where}: label {int(y.min())} is negative; labels are class indices 0..K-1")
    if num_classes is not None and len(y) and y.max() >= num_classes:
        raise UserError(f"{where}: label {int(y.max())} is beyond the class count {num_classes}; "
                        f"labels must be 0..{num_classes - 1}")
    return y.astype(np.int64)


def split_by_fraction(x: np.ndarray, y: np.ndarray, split_cls) -> tuple:
    """(train, val, test) by index at 60 % / 75 %; each split keeps at least one image."""
    n = len(y)
    a = max(1, int(n * SPLIT_FRACTIONS[0]))
    b = min(n - 1, max(a + 1, int(n * SPLIT_FRACTIONS[1])))
    return split_cls(x[:a], y[:a]), split_cls(x[a:b], y[a:b]), split_cls(x[b:], y[b:])


def warn_small_val(splits, warn=None) -> list[str]:
    """Warn (one line each) when val is too small, or lacks a class, to choose an exit threshold on it."""
    warn = warn or (lambda line: print(line, file=sys.stderr, flush=True))
    lines = []
    n_val = len(splits.val)
    if n_val < MIN_VAL:
        lines.append(f"warning: {splits.name}: validation split has {n_val} images (< {MIN_VAL}); the exit threshold "
                     "chosen on it is unreliable. Use more data (docs/training.md: split rule)")
    missing = sorted(set(np.unique(splits.train.y).tolist()) - set(np.unique(splits.val.y).tolist()))
    if missing:
        lines.append(f"warning: {splits.name}: classes {missing[:10]} are in train but not in val (is the data "
                     "sorted by class? shuffle it before saving)")
    for line in lines:
        warn(line)
    return lines
