"""Image folders, the split rule for user data and the small-validation warning."""
from __future__ import annotations

import numpy as np
import pytest

from tinyexit.errors import UserError
from tinyexit.models.data import load_dataset
from tinyexit.models.data_check import MIN_VAL, split_by_fraction


def _folder(root, sizes=(5, 5, 5), mode="RGB", hw=(7, 5)):
    from PIL import Image

    rng = np.random.default_rng(4)
    for k, n in enumerate(sizes):
        (root / f"class_{k}").mkdir(parents=True)
        for i in range(n):
            shape = (hw[0], hw[1], 3) if mode == "RGB" else hw
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(root / f"class_{k}" / f"{i}.png")


def test_image_folder_rgb_and_split(tmp_path):
    _folder(tmp_path / "imgs")
    lines = []
    s = load_dataset(f"folder:{tmp_path / 'imgs'}", warn=lines.append)
    assert s.input_shape == (3, 7, 5) and s.num_classes == 3
    assert s.sizes() == {"train": 9, "val": 2, "test": 4}
    assert sorted(np.concatenate([s.train.y, s.val.y, s.test.y]).tolist()) == [0] * 5 + [1] * 5 + [2] * 5
    assert lines[0].startswith(f"warning: folder:imgs: validation split has 2 images (< {MIN_VAL})")
    assert 0.0 <= s.train.x.min() and s.train.x.max() <= 1.0


def test_image_folder_gray_is_one_channel(tmp_path):
    _folder(tmp_path / "g", mode="L", hw=(4, 4))
    assert load_dataset(f"folder:{tmp_path / 'g'}", warn=lambda line: None).input_shape == (1, 4, 4)


def test_image_folder_errors(tmp_path):
    _folder(tmp_path / "a")
    (tmp_path / "a" / "class_1" / "9.png").write_bytes(b"not a png")
    with pytest.raises(UserError, match=r"9.png: not a readable image"):
        load_dataset(f"folder:{tmp_path / 'a'}")
    from PIL import Image

    _folder(tmp_path / "b")
    Image.new("RGB", (3, 3)).save(tmp_path / "b" / "class_0" / "x.png")
    with pytest.raises(UserError, match=r"x.png: size 3x3 differs"):
        load_dataset(f"folder:{tmp_path / 'b'}")
    (tmp_path / "c" / "only").mkdir(parents=True)
    with pytest.raises(UserError, match="found 1 class subfolder"):
        load_dataset(f"folder:{tmp_path / 'c'}")


def test_split_rule_keeps_every_split_nonempty():
    from tinyexit.models.data import Split

    for n in (8, 9, 10, 1000):
        tr, va, te = split_by_fraction(np.zeros((n, 1, 1, 1)), np.zeros(n), Split)
        assert len(tr) == max(1, int(n * 0.6)) and len(va) >= 1 and len(te) >= 1 and len(tr) + len(va) + len(te) == n
    tr, va, te = split_by_fraction(np.zeros((1000, 1, 1, 1)), np.zeros(1000), Split)
    assert (len(tr), len(va), len(te)) == (600, 150, 250)


def test_sorted_npz_warns_about_missing_val_classes(tmp_path):
    x = np.zeros((40, 4, 4, 1), np.uint8)
    y = np.repeat(np.arange(4), 10)  # sorted by class: val (24..29) holds only class 2
    np.savez(tmp_path / "s.npz", x=x, y=y)
    lines = []
    load_dataset(f"npz:{tmp_path / 's.npz'}", warn=lines.append)
    assert lines[1] == ("warning: npz:s.npz: classes [0, 1] are in train but not in val (is the data sorted by "
                        "class? shuffle it before saving)")


def test_npz_float_in_unit_range_kept(tmp_path):
    x = np.linspace(0, 1, 40 * 4).reshape(40, 2, 2, 1).astype(np.float64)
    np.savez(tmp_path / "f.npz", x=x, y=np.arange(40) % 2)
    s = load_dataset(f"npz:{tmp_path / 'f.npz'}", warn=lambda line: None)
    np.testing.assert_array_equal(s.train.x[1, 0], x[1, :, :, 0].astype(np.float32))
