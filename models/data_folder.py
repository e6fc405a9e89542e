"""Image folders: ROOT/<class>/<image>.png|jpg|jpeg, one subfolder per class (sorted names = labels).

Images must share one size; all grayscale gives one channel, otherwise RGB (three).  The images
are put in a fixed shuffled order (numpy default_rng(0)) before the 60/15/25 split, because a
folder tree is sorted by class.  Needs Pillow (pip install pillow).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from tinyexit.errors import UserError

EXTENSIONS = (".png", ".jpg", ".jpeg")


def load_folder(path: str):
    from tinyexit.models.data import Split, Splits
    from tinyexit.models.data_check import split_by_fraction

    root = Path(path)
    if not root.is_dir():
        raise UserError(f"{root}: no such directory; pass --dataset folder:ROOT with one subfolder of images per class")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    if len(classes) < 2:
        raise UserError(f"{root}: found {len(classes)} class subfolder(s); need at least 2 (ROOT/<class>/<image>.png)")
    files, labels = [], []
    for k, name in enumerate(classes):
        found = sorted(f for f in (root / name).iterdir() if f.suffix.lower() in EXTENSIONS)
        if not found:
            raise UserError(f"{root / name}: no PNG/JPEG images in this class folder; add images or remove it")
        files += found
        labels += [k] * len(found)
    if len(files) < 8:
        raise UserError(f"{root}: {len(files)} images; need at least 8 to split into train/val/test")
    x = _read_images(files)
    order = np.random.default_rng(0).permutation(len(files))
    x, y = x[order], np.asarray(labels, np.int64)[order]
    return Splits(f"folder:{root.name}", *split_by_fraction(x, y, Split), len(classes))


def _read_images(files: list[Path]) -> np.ndarray:
    """float32 NCHW in [0, 1]."""
    try:
        from PIL import Image
    except ImportError:
        raise UserError("image folders need Pillow; pip install pillow") from None
    imgs, gray = [], True
    for f in files:
        try:
            with Image.open(f) as im:
                im.load()
                gray = gray and im.mode in ("L", "1", "I;16")
                imgs.append(im.copy())
        except Exception as exc:  # PIL raises many types for a damaged file
            raise UserError(f"{f}: not a readable image ({type(exc).__name__}); fix or remove it") from None
    mode = "L" if gray else "RGB"
    size = imgs[0].size
    arrays = []
    for f, im in zip(files, imgs):
        if im.size != size:
            raise UserError(f"{f}: size {im.size[0]}x{im.size[1]} differs from {files[0].name}'s {size[0]}x{size[1]}; "
                            "resize all images to one size")
        a = np.asarray(im.convert(mode), dtype=np.float32) / 255.0
        arrays.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
    return np.ascontiguousarray(np.stack(arrays))
