"""Write a CIFAR-10-format folder (python pickles) of generated 32x32x3 images, for trying tinyexit
without downloading CIFAR-10.  Each class is a coloured stripe pattern at its own angle, plus noise
and a random shift, so a network can learn it and some images are harder than others.

    python examples/make_cifar_format.py OUT_DIR [--train 9000] [--test 1000] [--seed 0]
    tinyexit train early-exit --arch resnet8-ee --dataset cifar10 --data-dir OUT_DIR --out RUN --epochs 2
"""
from __future__ import annotations

import argparse
import pickle
from pathlib import Path

import numpy as np


def make_images(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3072) uint8 rows in CIFAR's channel-major layout, and N labels 0..9."""
    y = rng.integers(0, 10, n)
    yy, xx = np.mgrid[0:32, 0:32].astype(np.float32)
    angle = y[:, None, None] * (np.pi / 10)
    freq = 0.25 + 0.05 * (y[:, None, None] % 3)
    phase = rng.uniform(0, 2 * np.pi, (n, 1, 1))
    wave = np.sin(freq * (np.cos(angle) * xx + np.sin(angle) * yy) + phase)
    colour = np.stack([np.cos(y * 0.7), np.sin(y * 1.3), np.cos(y * 2.1)], 1)[:, :, None, None]
    noise = rng.normal(0, rng.uniform(0.5, 4.0, (n, 1, 1, 1)), (n, 3, 32, 32))
    img = 0.5 + 0.25 * wave[:, None] * colour + 0.15 * noise
    return (np.clip(img, 0, 1) * 255).astype(np.uint8).reshape(n, 3072), y


def write_cifar_format(out: Path, n_train: int = 9000, n_test: int = 1000, seed: int = 0) -> Path:
    """data_batch_1..5 (n_train split evenly) and test_batch under OUT/cifar-10-batches-py."""
    rng = np.random.default_rng(seed)
    root = Path(out) / "cifar-10-batches-py"
    root.mkdir(parents=True, exist_ok=True)
    sizes = [n_train // 5 + (1 if i < n_train % 5 else 0) for i in range(5)] + [n_test]
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name, n in zip(names, sizes):
        data, labels = make_images(n, rng)
        with open(root / name, "wb") as f:
            pickle.dump({b"data": data, b"labels": labels.tolist()}, f)
    return root


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--train", type=int, default=9000)
    ap.add_argument("--test", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    print(write_cifar_format(Path(a.out), a.train, a.test, a.seed))
