"""The run directory: a self-describing folder of artifacts.

RUN/config.json holds the frozen configuration that produced the run;
checkpoints/, export/, bench/ and report/ are added by later stages.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from tinyexit import __version__
from tinyexit.errors import UserError


def prepare_output_dir(out: str | os.PathLike, force: bool = False) -> Path:
    """Create `out` for a new run; refuse a non-empty folder unless `force`."""
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise UserError(f"{path}: exists and is not a directory; choose another --out")
    if path.is_dir() and any(path.iterdir()) and not force:
        raise UserError(f"{path}: output directory is not empty; choose another --out or pass --force")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise UserError(f"{path}: cannot write there ({exc.strerror}); choose a writable --out") from None
    return path.resolve()  # absolute: later stages run tools (make, qemu) from other directories


def require_run_dir(run: str | os.PathLike) -> Path:
    """Return `run` as a Path after checking that it is a tinyexit run directory."""
    path = Path(run)
    if not path.is_dir():
        raise UserError(f"{path}: no such run directory; create one with 'tinyexit train early-exit --out {path}'")
    if not (path / "config.json").is_file():
        raise UserError(f"{path}/config.json missing: not a tinyexit run directory; "
                        f"create one with 'tinyexit train early-exit --out {path}'")
    return path.resolve()  # absolute: later stages run tools (make, qemu) from other directories


def read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: file missing; re-run the stage that writes it") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid JSON ({exc}); delete it and re-run the stage that writes it") from None


def write_json(path: Path, data: dict) -> None:
    """Write atomically, so an interrupted run never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


def load_config(run: Path) -> dict:
    cfg = read_json(Path(run) / "config.json")
    made_by = cfg.get("tinyexit_version", "0")
    if _version_tuple(made_by) > _version_tuple(__version__):
        raise UserError(f"{run}/config.json: written by tinyexit {made_by}, newer than this {__version__}; "
                        "upgrade tinyexit (pip install -U tinyexit)")
    return cfg


def update_config(run: Path, section: str, value: dict) -> None:
    """Record one stage's frozen config under its own key in RUN/config.json."""
    path = Path(run) / "config.json"
    cfg = read_json(path) if path.exists() else {}
    cfg.setdefault("tinyexit_version", __version__)
    cfg[section] = value
    write_json(path, cfg)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _version_tuple(v: str) -> tuple:
    parts = []
    for p in str(v).split("."):
        digits = "".join(ch for ch in p if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)
