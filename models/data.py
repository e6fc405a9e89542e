"""Data sets for tinyexit, all local: nothing here downloads.

Every loader returns `Splits` with images as float32 NCHW in [0, 1] and int64
labels.  Split conventions (fixed, so numbers are comparable; docs/training.md):
  digits     : scikit-learn's bundled 8x8 digits; train = first 1000, val = next 350, test = last 447.
  cifar10    : python-pickle batches in --data-dir; test = test_batch; val = the last 5000 training
               images, or the last 10 % when there are fewer than 50,000.
  npz:PATH   : arrays `x` (N,H,W,C; uint8 0..255, or float in [0, 1]) and `y` (N integer labels), optional
               scalar `num_classes`; by index: train/val/test = first 60 % / next 15 % / last 25 %.
  folder:PATH: one subfolder per class (sorted names = labels 0..K-1) of PNG/JPEG images of one size;
               images in a fixed shuffled order (numpy default_rng(0)), then 60 % / 15 % / 25 %.
Bad data (NaN/inf or out-of-range pixels, negative, fractional or too-large labels, wrong ranks,
non-numeric arrays) is refused with one UserError line before anything is written
(tinyexit.models.data_check).  A val split under MIN_VAL images, or missing a class, gets a warning:
the exit threshold is chosen on val.  Thresholds and tuning use val; headline numbers use test.
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinyexit.errors import UserError
from tinyexit.models.data_check import check_labels, check_pixels, split_by_fraction

DIGITS_SPLIT = (1000, 350, 447)
DATASETS = ("digits", "cifar10", "npz:PATH", "folder:PATH")


@dataclass(frozen=True)
class Split:
    x: np.ndarray  # float32, N x C x H x W, values in [0, 1]
    y: np.ndarray  # int64, N

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class Splits:
    name: str
    train: Split
    val: Split
    test: Split
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.x.shape[1:])

    def sizes(self) -> dict:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}


def load_dataset(name: str, data_dir: str | None = None, warn=None) -> Splits:
    """Load a data set by name: 'digits', 'cifar10' (needs data_dir), 'npz:PATH' or 'folder:PATH'.
    `warn(line)` hears data warnings (default: one line on stderr)."""
    from tinyexit.models.data_check import warn_small_val

    if name == "digits":
        return load_digits()
    if name == "cifar10":
        splits = load_cifar10(data_dir)
    elif name.startswith("npz:"):
        splits = load_npz(name[4:])
    elif name.startswith("folder:"):
        from tinyexit.models.data_folder import load_folder

        splits = load_folder(name[7:])
    else:
        raise UserError(f"unknown dataset '{name}'; choose one of: {', '.join(DATASETS)}")
    warn_small_val(splits, warn)
    return splits


def load_digits() -> Splits:
    from sklearn.datasets import load_digits as sk_digits

    d = sk_digits()
    x = (d.images.astype(np.float32) / 16.0)[:, None, :, :]
    y = d.target.astype(np.int64)
    a, b, _ = DIGITS_SPLIT
    return Splits("digits", Split(x[:a], y[:a]), Split(x[a:a + b], y[a:a + b]), Split(x[a + b:], y[a + b:]), 10)


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise UserError(f"{path}: CIFAR-10 batch missing; put the python-pickle files "
                        "(cifar-10-batches-py/data_batch_1..5, test_batch) in --data-dir")
    try:
        with open(path, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
        data = np.asarray(batch[b"data"])
        labels = np.asarray(batch[b"labels"])
        if data.dtype != np.uint8:
            raise ValueError("data is not uint8")
    except Exception as exc:  # any unpickling problem is a malformed file for the user
        raise UserError(f"{path}: not a CIFAR-10 python-pickle batch ({type(exc).__name__}); "
                        "re-extract cifar-10-python.tar.gz into --data-dir") from None
    if data.ndim != 2 or data.shape[1] != 3072 or len(data) != len(labels):
        raise UserError(f"{path}: expected 'data' of shape (N, 3072) and N labels, got {data.shape} "
                        f"and {len(labels)}; re-extract cifar-10-python.tar.gz into --data-dir")
    labels = check_labels(labels, f"{path}: labels", 10)
    return data.reshape(-1, 3, 32, 32).astype(np.float32) / 255.0, labels


def load_cifar10(data_dir: str | None) -> Splits:
    if not data_dir:
        raise UserError("dataset 'cifar10' needs --data-dir pointing at cifar-10-batches-py/ "
                        "(tinyexit never downloads; fetch cifar-10-python.tar.gz yourself and extract it)")
    root = Path(data_dir)
    if (root / "cifar-10-batches-py").is_dir():
        root = root / "cifar-10-batches-py"
    if not root.is_dir():
        raise UserError(f"{root}: no such directory; extract cifar-10-python.tar.gz there and pass it as --data-dir")
    parts = [_read_cifar_batch(root / f"data_batch_{i}") for i in range(1, 6)]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    xt, yt = _read_cifar_batch(root / "test_batch")
    n_val = max(1, len(y) // 10) if len(y) < 50000 else 5000
    return Splits("cifar10", Split(x[:-n_val], y[:-n_val]), Split(x[-n_val:], y[-n_val:]), Split(xt, yt), 10)


def load_npz(path: str) -> Splits:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: no such file; pass --dataset npz:PATH with a .npz holding arrays 'x' and 'y'")
    try:
        arrays = np.load(p, allow_pickle=False)
        x, y = arrays["x"], arrays["y"]
        declared = arrays["num_classes"] if "num_classes" in arrays.files else None
    except KeyError:
        raise UserError(f"{p}: needs arrays named 'x' (N,H,W,C) and 'y' (N)") from None
    except Exception as exc:
        raise UserError(f"{p}: not a readable .npz ({type(exc).__name__}); save it with numpy.savez(x=..., y=...)") from None
    if x.ndim != 4 or y.ndim != 1 or len(x) != len(y) or len(y) < 8:
        raise UserError(f"{p}: expected x of shape (N,H,W,C) and y of shape (N,) with N >= 8, "
                        f"got x{tuple(x.shape)} and y{tuple(y.shape)}")
    xf = check_pixels(x, f"{p}: x")
    if declared is not None and (declared.shape != () or declared.dtype.kind not in "iu" or int(declared) < 2):
        raise UserError(f"{p}: num_classes must be one integer >= 2, got {declared!r}")
    y = check_labels(y, f"{p}: y", None if declared is None else int(declared))
    xf = np.ascontiguousarray(xf.transpose(0, 3, 1, 2))
    k = int(declared) if declared is not None else int(y.max()) + 1
    return Splits(f"npz:{p.name}", *split_by_fraction(xf, y, Split), k)
