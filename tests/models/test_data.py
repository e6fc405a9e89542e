import pickle

import numpy as np
import pytest

from tinyexit.errors import UserError
from tinyexit.models.data import load_dataset


def test_digits_fixed_split():
    s = load_dataset("digits")
    assert s.sizes() == {"train": 1000, "val": 350, "test": 447}
    assert s.input_shape == (1, 8, 8) and s.num_classes == 10
    assert s.train.x.dtype == np.float32 and s.train.x.min() == 0.0 and s.train.x.max() == 1.0
    # The split is by index: the first test image is image 1350 of the bundled set.
    from sklearn.datasets import load_digits
    d = load_digits()
    np.testing.assert_array_equal(s.test.x[0, 0], d.images[1350] / 16.0)
    assert s.test.y[-1] == d.target[-1]


def _write_cifar(root, n_train_per_batch=6, n_test=5, seed=0):
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    for name, n in [(f"data_batch_{i}", n_train_per_batch) for i in range(1, 6)] + [("test_batch", n_test)]:
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                 b"labels": rng.integers(0, 10, n).tolist()}
        with open(root / name, "wb") as f:
            pickle.dump(batch, f)
    return rng


def test_cifar10_loader_on_generated_files(tmp_path):
    _write_cifar(tmp_path / "cifar-10-batches-py")
    s = load_dataset("cifar10", str(tmp_path))
    assert s.input_shape == (3, 32, 32)
    assert len(s.train) + len(s.val) == 30 and len(s.test) == 5 and len(s.val) == 3
    # Channel-major layout: the first 1024 bytes of a row are the red plane.
    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "rb") as f:
        raw = pickle.load(f, encoding="bytes")[b"data"][0]
    np.testing.assert_allclose(s.test.x[0, 0].ravel(), raw[:1024] / 255.0, rtol=1e-6)


def test_cifar10_errors(tmp_path):
    with pytest.raises(UserError, match="--data-dir"):
        load_dataset("cifar10", None)
    with pytest.raises(UserError, match="no such directory"):
        load_dataset("cifar10", str(tmp_path / "nope"))
    _write_cifar(tmp_path / "c")
    (tmp_path / "c" / "data_batch_3").write_bytes(b"garbage")
    with pytest.raises(UserError, match="data_batch_3: not a CIFAR-10"):
        load_dataset("cifar10", str(tmp_path / "c"))


def test_npz_loader_and_errors(tmp_path):
    x = np.random.default_rng(1).integers(0, 256, (40, 5, 5, 2), dtype=np.uint8)
    y = np.arange(40) % 4
    np.savez(tmp_path / "d.npz", x=x, y=y)
    s = load_dataset(f"npz:{tmp_path / 'd.npz'}")
    assert s.sizes() == {"train": 24, "val": 6, "test": 10} and s.input_shape == (2, 5, 5) and s.num_classes == 4
    np.testing.assert_allclose(s.train.x[0, 1], x[0, :, :, 1] / 255.0, rtol=1e-6)
    np.savez(tmp_path / "bad.npz", images=x)
    with pytest.raises(UserError, match="'x'"):
        load_dataset(f"npz:{tmp_path / 'bad.npz'}")
    with pytest.raises(UserError, match="unknown dataset 'mnist'"):
        load_dataset("mnist")
