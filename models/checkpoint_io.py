"""Reading torch checkpoints safely: every model family loads through `read_checkpoint`.

A torch checkpoint is a zip archive with a CRC-32 per record, so a flipped bit in
the weights, which torch.load would read silently, is caught by testing the CRCs
before loading.  Any failure becomes one UserError naming the file and the fix.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

from tinyexit.errors import UserError


def check_zip_crcs(path: Path, fix: str) -> None:
    """Raise UserError when a zip-format checkpoint has a damaged record; other files are left to torch."""
    path = Path(path)
    if not path.is_file() or not zipfile.is_zipfile(path):
        return
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise UserError(f"{path}: damaged checkpoint ({type(exc).__name__}); {fix}") from None
    if bad is not None:
        raise UserError(f"{path}: damaged checkpoint (CRC mismatch in record '{bad}'); {fix}")


def read_checkpoint(path: Path, what: str, fix: str) -> dict:
    """torch.load(weights_only=True) of a checkpoint dict, with clear errors for missing or damaged files."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: {what} missing; {fix}")
    check_zip_crcs(path, fix)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a damaged file; all mean the same to a user
        raise UserError(f"{path}: not a readable checkpoint ({type(exc).__name__}); {fix}") from None
