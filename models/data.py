"""Data sets for tinyexit, all local: nothing here downloads.

Every loader returns `Splits` with images as float32 NCHW in [0, 1] and int64
labels.  Split conventions (fixed by index so numbers are comparable):
  digits  : scikit-learn's bundled 8x8 digits; train = first 1000, val = next 350, test = last 447.
  cifar10 : python-pickle batches in --data-dir; val = last 5000 training images.
  npz:PATH: arrays `x` (N,H,W,C uint8 or float) and `y`; train/val/test = first 60 % / next 15 % / last 25 %.
Thresholds and tuning use val; headline numbers use test.
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinyexit.errors import UserError

DIGITS_SPLIT = (1000, 350, 447)
DATASETS = ("digits", "cifar10", "npz:PATH")


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


def load_dataset(name: str, data_dir: str | None = None) -> Splits:
    """Load a data set by name: 'digits', 'cifar10' (needs data_dir) or 'npz:PATH'."""
    if name == "digits":
        return load_digits()
    if name == "cifar10":
        return load_cifar10(data_dir)
    if name.startswith("npz:"):
        return load_npz(name[4:])
    raise UserError(f"unknown dataset '{name}'; choose one of: {', '.join(DATASETS)}")


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
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except Exception as exc:  # any unpickling problem is a malformed file for the user
        raise UserError(f"{path}: not a CIFAR-10 python-pickle batch ({type(exc).__name__}); "
                        "re-extract cifar-10-python.tar.gz into --data-dir") from None
    if data.ndim != 2 or data.shape[1] != 3072 or len(data) != len(labels):
        raise UserError(f"{path}: expected 'data' of shape (N, 3072) and N labels, got {data.shape} "
                        f"and {len(labels)}; re-extract cifar-10-python.tar.gz into --data-dir")
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
    n_val = min(5000, len(y) // 10) if len(y) < 50000 else 5000
    return Splits("cifar10", Split(x[:-n_val], y[:-n_val]), Split(x[-n_val:], y[-n_val:]), Split(xt, yt), 10)


def load_npz(path: str) -> Splits:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: no such file; pass --dataset npz:PATH with a .npz holding arrays 'x' and 'y'")
    try:
        arrays = np.load(p, allow_pickle=False)
        x, y = arrays["x"], arrays["y"]
    except KeyError:
        raise UserError(f"{p}: needs arrays named 'x' (N,H,W,C) and 'y' (N)") from None
    except Exception as exc:
        raise UserError(f"{p}: not a readable .npz ({type(exc).__name__}); save it with numpy.savez(x=..., y=...)") from None
    if x.ndim != 4 or y.ndim != 1 or len(x) != len(y) or len(y) < 8:
        raise UserError(f"{p}: expected x of shape (N,H,W,C) and y of shape (N,) with N >= 8, "
                        f"got x{tuple(x.shape)} and y{tuple(y.shape)}")
    xf = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)
    xf = np.ascontiguousarray(xf.transpose(0, 3, 1, 2))
    y = y.astype(np.int64)
    n = len(y)
    a, b = int(n * 0.6), int(n * 0.75)
    return Splits(f"npz:{p.name}", Split(xf[:a], y[:a]), Split(xf[a:b], y[a:b]), Split(xf[b:], y[b:]),
                  int(y.max()) + 1)
