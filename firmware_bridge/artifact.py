"""The exported artifact as the device side sees it: manifest.json, its files, its test inputs.

NumPy only: the agent on a Raspberry Pi imports this.  Every file the agent or
the host reference loads is checked against the manifest's sha256, so the
artifact hash a device reports really names the bytes it runs.
"""
from __future__ import annotations

import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinyexit import __version__
from tinyexit.errors import UserError
from tinyexit.models.exit_policy import ExitPolicy
from tinyexit.rundir import sha256_file


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: float
    zero_point: int

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * np.dtype(self.dtype).itemsize

    @classmethod
    def from_dict(cls, d: dict) -> "TensorSpec":
        return cls(d.get("name", ""), tuple(int(v) for v in d["shape"]), d.get("dtype", "int8"),
                   float(d.get("scale", 1.0)), int(d.get("zero_point", 0)))


@dataclass(frozen=True)
class Segment:
    index: int
    signature: str
    inputs: tuple[TensorSpec, ...]
    outputs: dict  # name -> TensorSpec ("logits", and "features" for all but the last)
    files: dict
    macs: int


@dataclass(frozen=True)
class Artifact:
    dir: Path
    manifest: dict
    model: str
    artifact_hash: str
    input: TensorSpec
    segments: tuple[Segment, ...]
    policy: ExitPolicy | None

    @property
    def n_segments(self) -> int:
        return len(self.segments)

    @property
    def num_classes(self) -> int:
        return int(np.prod(self.segments[-1].outputs["logits"].shape))

    def file(self, entry: dict | None, what: str, verify: bool = True) -> Path:
        """Path of a manifest file entry, checked to exist and (by default) to match its sha256."""
        manifest = self.dir / "manifest.json"
        if not entry or "path" not in entry:
            raise UserError(f"{manifest}: no {what} listed; re-run 'tinyexit export'")
        path = self.dir / entry["path"]
        if not path.is_file():
            raise UserError(f"{path}: {what} listed in {manifest} is missing; re-run 'tinyexit export' or copy the "
                            "whole export directory")
        if verify and entry.get("sha256") and sha256_file(path) != entry["sha256"]:
            raise UserError(f"{path}: sha256 differs from {manifest}; the file is damaged or from another export, "
                            "copy the export directory again or re-run 'tinyexit export'")
        return path

    def segment_input_bytes(self, k: int) -> int:
        return self.segments[k].inputs[0].nbytes


def load_artifact(directory: str | Path) -> Artifact:
    """Read and check RUN/export/<model>/manifest.json (UserError names what is wrong)."""
    d = Path(directory)
    path = d / "manifest.json"
    if not path.is_file():
        raise UserError(f"{path}: missing; point --artifact at RUN/export/<model> written by 'tinyexit export'")
    try:
        man = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid JSON ({exc}); re-run 'tinyexit export'") from None
    try:
        return _parse(d, man)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise UserError(f"{path}: malformed manifest ({type(exc).__name__}: {exc}); re-run 'tinyexit export'") from None


def _parse(d: Path, man: dict) -> Artifact:
    where = d / "manifest.json"
    made_by = str(man.get("tinyexit_version", "0"))
    if _version(made_by) > _version(__version__):
        raise UserError(f"{where}: written by tinyexit {made_by}, newer than this {__version__}; upgrade tinyexit "
                        "here (pip install -U tinyexit) or export with the version installed on this device")
    digest = str(man["artifact_hash"])
    if not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise UserError(f"{where}: artifact_hash '{digest[:20]}' is not a sha256 hex digest; re-run 'tinyexit export'")
    segments = []
    for k, s in enumerate(man["segments"]):
        if int(s["index"]) != k:
            raise UserError(f"{where}: segment {k} has index {s['index']}; re-run 'tinyexit export'")
        outputs = {o["name"]: TensorSpec.from_dict(o) for o in s["outputs"]}
        if "logits" not in outputs or (k + 1 < len(man["segments"]) and "features" not in outputs):
            raise UserError(f"{where}: segment {k} outputs {sorted(outputs)}; need 'logits' (and 'features' "
                            "except on the last segment)")
        segments.append(Segment(k, s.get("signature", f"exit{k}"), tuple(TensorSpec.from_dict(i) for i in s["inputs"]),
                                outputs, s.get("files", {}), int(s.get("macs", 0))))
    if not segments:
        raise UserError(f"{where}: no segments; re-run 'tinyexit export'")
    for k in range(1, len(segments)):
        _check_boundary(where, segments[k - 1].outputs["features"], segments[k].inputs[0], k)
    policy = ExitPolicy.from_dict(man["policy"]) if man.get("policy") else None
    return Artifact(d, man, str(man.get("model", d.name)), digest, TensorSpec.from_dict(man["input"]),
                    tuple(segments), policy)


def _version(text: str) -> tuple[int, ...]:
    return tuple(int("".join(c for c in part if c.isdigit()) or 0) for part in text.split("."))


def verify_files(art: Artifact, onnx: bool = False) -> None:
    """Check every file the benchmark can load against the manifest's sha256 (UserError names the first bad one)."""
    files = art.manifest.get("files", {})
    for key, what in (("tflite", "multi-signature int8 TFLite"), ("full_tflite", "full-depth int8 TFLite"),
                      ("all_exits_tflite", "all-exits int8 TFLite")):
        if files.get(key):
            art.file(files[key], what)
    for seg in art.segments:
        for key in ("tflm", "onnx_int8") if onnx else ("tflm",):
            if seg.files.get(key):
                art.file(seg.files[key], f"{key} file of segment {seg.index}")


def _check_boundary(where: Path, out: TensorSpec, inp: TensorSpec, k: int) -> None:
    """Features cross a segment boundary as int8 with the same quantization on both sides."""
    same_scale = abs(out.scale - inp.scale) <= 1e-6 * max(abs(out.scale), 1e-12)
    if out.shape != inp.shape or out.zero_point != inp.zero_point or not same_scale:
        raise UserError(f"{where}: features of segment {k - 1} ({out.shape}, scale {out.scale}, zp {out.zero_point}) "
                        f"do not match the input of segment {k} ({inp.shape}, scale {inp.scale}, zp {inp.zero_point}); "
                        "re-run 'tinyexit export'")


def quantize(x: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """Float to int8 as TFLite's QUANTIZE does: float32 x / scale, round half away from zero, clamp."""
    v = (np.asarray(x, np.float32) / np.float32(spec.scale)).astype(np.float64)
    q = np.sign(v) * np.floor(np.abs(v) + 0.5)
    return np.clip(q + spec.zero_point, -128, 127).astype(np.int8)


def dequantize(q: np.ndarray, spec: TensorSpec) -> np.ndarray:
    return (np.asarray(q, np.float64) - spec.zero_point) * spec.scale


def load_test_inputs(run_dir: Path, art: Artifact, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The quantized test split (N, *input shape[1:]) int8 and its labels.

    Prefers export/<model>/inputs.npz (arrays x int8 NHWC and y) written by the
    export stage; otherwise quantizes the data set named in RUN/config.json,
    which needs scikit-learn (the host has it; a device never calls this).
    """
    npz = art.dir / "inputs.npz"
    if npz.is_file():
        try:
            with np.load(npz, allow_pickle=False) as f:
                x = f["x"] if "x" in f else f["test_x"]
                y = f["y"] if "y" in f else f["test_y"]
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            raise UserError(f"{npz}: not a readable inputs file ({type(exc).__name__}); re-run 'tinyexit export' "
                            "or delete it to quantize the run's test split again") from None
    else:
        x, y = _inputs_from_dataset(Path(run_dir), art)
    want = tuple(art.input.shape[1:])
    if x.dtype != np.int8 or tuple(x.shape[1:]) != want or len(x) != len(y):
        raise UserError(f"{npz}: x must be int8 of shape (N, {', '.join(map(str, want))}) with one label per "
                        f"row, got {x.dtype} {tuple(x.shape)} and {len(y)} labels; re-run 'tinyexit export'")
    n = len(y) if limit is None else min(limit, len(y))
    return np.ascontiguousarray(x[:n]), np.asarray(y[:n], dtype=np.int64)


def synthetic_inputs(art: Artifact, n: int, seed: int = 0) -> np.ndarray:
    """Seeded inputs spread over the model's float input range, quantized: enough for timing and
    device-vs-host agreement when no test split fits the model (labels are then unknown)."""
    lo, hi = art.manifest.get("float_input_range", [0.0, 1.0])
    rng = np.random.default_rng(seed)
    return quantize(rng.uniform(lo, hi, (n, *art.input.shape[1:])), art.input)


def _inputs_from_dataset(run_dir: Path, art: Artifact) -> tuple[np.ndarray, np.ndarray]:
    from tinyexit.rundir import load_config

    section = load_config(run_dir).get(art.model, {})
    dataset = section.get("dataset", "digits")
    try:
        from tinyexit.models.data import load_dataset

        split = load_dataset(dataset, section.get("data_dir")).test
    except ImportError as exc:
        raise UserError(f"{art.dir}/inputs.npz missing and the data set cannot be loaded here ({exc}); "
                        "re-run 'tinyexit export' or install tinyexit[train]") from None
    x = np.ascontiguousarray(split.x.transpose(0, 2, 3, 1))  # NCHW float -> NHWC as exported
    return quantize(x, art.input), split.y
