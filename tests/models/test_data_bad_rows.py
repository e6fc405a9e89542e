"""Every bad-data row of issue 12: one clear line, non-zero exit, and the run directory never created."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

from tinyexit.cli import main

RNG = np.random.default_rng(12)
GOOD_X = RNG.integers(0, 256, (40, 6, 6, 3), dtype=np.uint8)
GOOD_Y = np.arange(40) % 4


def _nan():
    x = GOOD_X.astype(np.float32) / 255
    x[3, 1, 1, 0] = np.nan
    return x, GOOD_Y


def _inf():
    x = GOOD_X.astype(np.float32) / 255
    x[0, 0, 0, 2] = np.inf
    return x, GOOD_Y


ROWS = {
    "nan-pixels": (_nan, {}, "1 pixel(s) are NaN or infinite"),
    "inf-pixels": (_inf, {}, "1 pixel(s) are NaN or infinite"),
    "float-out-of-range": (lambda: (GOOD_X.astype(np.float32), GOOD_Y), {}, "outside [0, 1]"),
    "negative-label": (lambda: (GOOD_X, np.where(GOOD_Y == 2, -1, GOOD_Y)), {}, "label -1 is negative"),
    "fractional-label": (lambda: (GOOD_X, GOOD_Y + np.where(np.arange(40) == 5, 0.5, 0.0)), {},
                         "label 1.5 is not a whole number"),
    "label-beyond-classes": (lambda: (GOOD_X, GOOD_Y), {"num_classes": np.int64(3)}, "label 3 is beyond the class count 3"),
    "x-wrong-rank": (lambda: (GOOD_X[..., 0], GOOD_Y), {}, "expected x of shape (N,H,W,C)"),
    "y-wrong-rank": (lambda: (GOOD_X, GOOD_Y[:, None]), {}, "expected x of shape (N,H,W,C)"),
    "string-pixels": (lambda: (GOOD_X.astype(str), GOOD_Y), {}, "not numbers"),
    "string-labels": (lambda: (GOOD_X, GOOD_Y.astype(str)), {}, "save integer class indices"),
}


@pytest.mark.parametrize("row", sorted(ROWS))
def test_bad_npz_row(row, tmp_path, capsys):
    make, extra, expected = ROWS[row]
    x, y = make()
    np.savez(tmp_path / "d.npz", x=x, y=y, **extra)
    out = tmp_path / "run"
    code = main(["train", "early-exit", "--dataset", f"npz:{tmp_path / 'd.npz'}", "--out", str(out), "--epochs", "1"])
    err = capsys.readouterr().err.strip()
    assert code != 0 and expected in err and f"{tmp_path / 'd.npz'}" in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


def test_cifar_label_beyond_ten(tmp_path, capsys):
    root = tmp_path / "c" / "cifar-10-batches-py"
    root.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        labels = [10 if name == "data_batch_2" else 1] * 4
        with open(root / name, "wb") as f:
            pickle.dump({b"data": np.zeros((4, 3072), np.uint8), b"labels": labels}, f)
    out = tmp_path / "run"
    code = main(["train", "early-exit", "--dataset", "cifar10", "--data-dir", str(tmp_path / "c"), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code != 0 and "data_batch_2: labels: label 10 is beyond the class count 10" in err
    assert len(err.splitlines()) == 1 and not out.exists()


def test_bad_arch_writes_nothing(tmp_path, capsys):
    np.savez(tmp_path / "d.npz", x=GOOD_X, y=GOOD_Y)
    out = tmp_path / "run"
    code = main(["train", "early-exit", "--dataset", f"npz:{tmp_path / 'd.npz'}", "--arch", "resnet9000",
                 "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code != 0 and "--arch 'resnet9000': choose one of resnet-digits, resnet8-ee" in err and not out.exists()
