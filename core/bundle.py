"""The export bundle, RUN/export/<model>/: the one contract between producers and consumers.

Anything that writes a bundle (tinyexit's own export, a user's PyTorch segments,
`tinyexit import` of an int8 TFLite file) gets every consumer for free; every
consumer (agent, bench, firmware build, verify, report, check) reads it through
`load_bundle` and nothing else.  NumPy only: a Raspberry Pi imports this.

A bundle is manifest.json (schema: docs/bundle.schema.json, prose: docs/artifacts.md)
plus the files it lists, each pinned by sha256, among them `inputs.npz`: the
quantized test inputs the bench streams (x int8 NHWC, y labels or targets, and for
the denoiser t, the step of each input).
"""
from __future__ import annotations

import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tinyexit import __version__
from tinyexit.errors import UserError
from tinyexit.exit_policy import ExitPolicy
from tinyexit.rundir import sha256_file

SCHEMA_VERSION = 1
INPUTS_FILE = "inputs.npz"
# The relative tolerance of a boundary's scale: both sides are written from one float32 value,
# so they agree to float32 rounding at worst (JSON carries them as decimal text).
BOUNDARY_SCALE_RTOL = 1e-6
# The monolithic models a bundle may record: name -> (its key in "files", the manifest's MAC key).
MONOLITHIC = {"full": ("full_tflite", "full_macs"), "all_exits": ("all_exits_tflite", "all_exits_macs")}


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
    ops: tuple[dict, ...] = ()


@dataclass(frozen=True)
class MonolithicModel:
    """A one-subgraph model of the bundle, recorded as a segment is (from its graph, at export):
    "full" = the backbone and only the last head (the network with no exit taken), "all_exits" =
    every exit head in one subgraph (the baseline for the cost of splitting)."""
    name: str                        # "full" | "all_exits": its key under the manifest's "monolithic"
    file: str                        # its entry in Bundle.files ("full_tflite", "all_exits_tflite")
    signature: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]  # in the subgraph's order ("logits" first; all_exits: then logits_0, ...)
    macs: int
    param_bytes: int
    ops: tuple[dict, ...] = ()       # the per-op records of export.tflite_graph.op_record


@dataclass(frozen=True)
class ExitSpec:
    index: int
    cumulative_macs: int
    mac_ratio: float


@dataclass(frozen=True)
class PolicyProvenance:
    """Where the operating point came from: which split, which rule, and whether a user overrode it."""
    source: str                 # "chosen at training" | "override (--threshold)" | "default" | "imported"
    split: str | None = None    # the split it was chosen on ("val")
    rule: str | None = None     # the rule that chose it, in words
    chosen_value: list | None = None  # what the rule chose, when an override replaced it

    def to_dict(self) -> dict:
        return {"source": self.source, "split": self.split, "rule": self.rule, "chosen_value": self.chosen_value}

    @classmethod
    def from_dict(cls, d: dict | None) -> "PolicyProvenance":
        d = d or {}
        return cls(str(d.get("source", "unknown")), d.get("split"), d.get("rule"), d.get("chosen_value"))


@dataclass(frozen=True)
class Bundle:
    dir: Path
    manifest: dict
    model: str
    schema_version: int
    artifact_hash: str
    input: TensorSpec
    segments: tuple[Segment, ...]
    exits: tuple[ExitSpec, ...]
    full_macs: int
    policy: ExitPolicy | None
    policy_provenance: PolicyProvenance | None
    files: dict = field(default_factory=dict)
    inputs: dict | None = None  # the inputs.npz file entry and what it holds
    # Where the model came from: None in a bundle made without a checkpoint (`tinyexit import`).
    source_checkpoint_sha256: str | None = None
    config_sha256: str | None = None
    # The monolithic models exported beside the segments, by name ("full", "all_exits"); empty when none.
    monolithic: dict = field(default_factory=dict)  # name -> MonolithicModel

    @property
    def n_segments(self) -> int:
        return len(self.segments)

    @property
    def num_classes(self) -> int:
        return int(np.prod(self.segments[-1].outputs["logits"].shape))

    @property
    def float_input_range(self) -> tuple[float, float]:
        lo, hi = self.manifest.get("float_input_range", [0.0, 1.0])
        return float(lo), float(hi)

    @property
    def has_labels(self) -> bool:
        return bool(self.inputs and self.inputs.get("labels"))

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

    def all_file_entries(self) -> list[dict]:
        recs = [r for r in self.files.values() if isinstance(r, dict) and "path" in r]
        for seg in self.segments:
            recs.extend(r for r in seg.files.values() if isinstance(r, dict) and "path" in r)
        if self.inputs:
            recs.append(self.inputs)
        return recs


def default_model(run_dir: str | Path, model: str | None) -> str:
    """The bundle of a run directory a command works on: `model` when given, else "classifier" when the
    run has it, else the run's only bundle (an imported model names itself)."""
    if model:
        return model
    export = Path(run_dir) / "export"
    found = sorted(p.parent.name for p in export.glob("*/manifest.json")) if export.is_dir() else []
    return found[0] if len(found) == 1 and "classifier" not in found else "classifier"


def load_bundle(directory: str | Path, verify: bool = False) -> Bundle:
    """Read and check RUN/export/<model>/manifest.json (UserError names what is wrong).

    With `verify`, every file the manifest lists is checked against its sha256 too.
    """
    d = Path(directory)
    path = d / "manifest.json"
    if not path.is_file():
        raise UserError(f"{path}: missing; point at RUN/export/<model> written by 'tinyexit export' "
                        "(or 'tinyexit import')")
    try:
        man = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid JSON ({exc}); re-run 'tinyexit export'") from None
    if not isinstance(man, dict):
        raise UserError(f"{path}: not a tinyexit manifest (a JSON object is expected); re-run 'tinyexit export'")
    try:
        bundle = _parse(d, man)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise UserError(f"{path}: malformed manifest ({type(exc).__name__}: {exc}); re-run 'tinyexit export'") from None
    if verify:
        for rec in bundle.all_file_entries():
            bundle.file(rec, "file")
    return bundle


def _parse(d: Path, man: dict) -> Bundle:
    where = d / "manifest.json"
    made_by = str(man.get("tinyexit_version", "0"))
    if _version(made_by) > _version(__version__):
        raise UserError(f"{where}: written by tinyexit {made_by}, newer than this {__version__}; upgrade tinyexit "
                        "here (pip install -U tinyexit) or export with the version installed on this device")
    schema = int(man.get("schema_version", 0))
    if schema != SCHEMA_VERSION:
        raise UserError(f"{where}: bundle schema version {schema}, this tinyexit reads version {SCHEMA_VERSION}; "
                        "re-run 'tinyexit export' with this tinyexit")
    for key in ("model", "segments", "files", "exits", "input", "artifact_hash"):
        if key not in man:
            raise UserError(f"{where}: no '{key}' key (not a tinyexit bundle); re-run 'tinyexit export'")
    digest = str(man["artifact_hash"])
    if not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise UserError(f"{where}: artifact_hash '{digest[:20]}' is not a sha256 hex digest; re-run 'tinyexit export'")
    segments = [_segment(where, k, s, len(man["segments"])) for k, s in enumerate(man["segments"])]
    if not segments:
        raise UserError(f"{where}: no segments; re-run 'tinyexit export'")
    for k in range(1, len(segments)):
        check_boundary(where, segments[k - 1].outputs["features"], segments[k].inputs[0], k)
    exits = tuple(ExitSpec(int(e["index"]), int(e["cumulative_macs"]), float(e["mac_ratio"])) for e in man["exits"])
    if len(exits) != len(segments):
        raise UserError(f"{where}: {len(exits)} exits for {len(segments)} segments; re-run 'tinyexit export'")
    policy = ExitPolicy.from_dict(man["policy"]) if man.get("policy") else None
    provenance = PolicyProvenance.from_dict(man["policy"].get("provenance")) if man.get("policy") else None
    inputs = man.get("inputs")
    if inputs is not None and not (isinstance(inputs, dict) and "path" in inputs):
        raise UserError(f"{where}: 'inputs' must name a file ({INPUTS_FILE}); re-run 'tinyexit export'")
    ckpt = man.get("source_checkpoint")
    return Bundle(d, man, str(man["model"]), schema, digest, TensorSpec.from_dict(man["input"]), tuple(segments),
                  exits, int(man.get("full_macs") or exits[-1].cumulative_macs), policy, provenance,
                  dict(man["files"]), inputs,
                  source_checkpoint_sha256=_digest(where, "source_checkpoint.sha256", (ckpt or {}).get("sha256")),
                  config_sha256=_digest(where, "config_sha256", man.get("config_sha256")),
                  monolithic=_monolithic(where, man))


def _digest(where: Path, key: str, value) -> str | None:
    if value is None:
        return None
    if not re.fullmatch(r"[0-9a-f]{64}", str(value)):
        raise UserError(f"{where}: {key} '{str(value)[:20]}' is not a sha256 hex digest; re-run 'tinyexit export'")
    return str(value)


def _monolithic(where: Path, man: dict) -> dict:
    """The "monolithic" records (cost records: the models' files are checked with the others)."""
    recs = man.get("monolithic")
    if recs is None:
        return {}
    if not isinstance(recs, dict) or not all(isinstance(r, dict) for r in recs.values()):
        raise UserError(f"{where}: 'monolithic' must map model names to records; re-run 'tinyexit export'")
    out = {}
    for name, r in recs.items():
        file_key, macs_key = MONOLITHIC.get(name, (f"{name}_tflite", None))
        out[name] = MonolithicModel(str(name), str(r.get("file", file_key)), str(r.get("signature", name)),
                                    tuple(TensorSpec.from_dict(t) for t in r.get("inputs", ())),
                                    tuple(TensorSpec.from_dict(t) for t in r.get("outputs", ())),
                                    int(r.get("macs", man.get(macs_key) or 0)), int(r.get("param_bytes", 0)),
                                    tuple(r.get("ops", ())))
    return out


def _segment(where: Path, k: int, s: dict, n: int) -> Segment:
    if int(s["index"]) != k:
        raise UserError(f"{where}: segment {k} has index {s['index']}; re-run 'tinyexit export'")
    outputs = {o["name"]: TensorSpec.from_dict(o) for o in s["outputs"]}
    if "logits" not in outputs or (k + 1 < n and "features" not in outputs):
        raise UserError(f"{where}: segment {k} outputs {sorted(outputs)}; need 'logits' (and 'features' "
                        "except on the last segment)")
    return Segment(k, s.get("signature", f"exit{k}"), tuple(TensorSpec.from_dict(i) for i in s["inputs"]),
                   outputs, s.get("files", {}), int(s.get("macs", 0)), tuple(s.get("ops", ())))


def _version(text: str) -> tuple[int, ...]:
    return tuple(int("".join(c for c in part if c.isdigit()) or 0) for part in text.split("."))


def check_boundary(where, out: TensorSpec, inp: TensorSpec, k: int) -> None:
    """Features cross a segment boundary as int8 with the same quantization on both sides."""
    same_scale = abs(out.scale - inp.scale) <= BOUNDARY_SCALE_RTOL * max(abs(out.scale), 1e-12)
    if out.shape != inp.shape or out.zero_point != inp.zero_point or not same_scale:
        raise UserError(f"{where}: features of segment {k - 1} ({out.shape}, scale {out.scale}, zp {out.zero_point}) "
                        f"do not match the input of segment {k} ({inp.shape}, scale {inp.scale}, zp {inp.zero_point}); "
                        "re-run 'tinyexit export'")


def verify_files(bundle: Bundle, onnx: bool = False) -> None:
    """Check every file the benchmark can load against the manifest's sha256 (UserError names the first bad one)."""
    for key, what in (("tflite", "multi-signature int8 TFLite"), ("full_tflite", "full-depth int8 TFLite"),
                      ("all_exits_tflite", "all-exits int8 TFLite")):
        if bundle.files.get(key):
            bundle.file(bundle.files[key], what)
    for seg in bundle.segments:
        for key in ("tflm", "onnx_int8") if onnx else ("tflm",):
            if seg.files.get(key):
                bundle.file(seg.files[key], f"{key} file of segment {seg.index}")
    if bundle.inputs:
        bundle.file(bundle.inputs, "quantized test inputs")


def quantize(x: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """Float to int8 as TFLite's QUANTIZE does: float32 x / scale, round half away from zero, clamp."""
    v = (np.asarray(x, np.float32) / np.float32(spec.scale)).astype(np.float64)
    q = np.sign(v) * np.floor(np.abs(v) + 0.5)
    return np.clip(q + spec.zero_point, -128, 127).astype(np.int8)


def dequantize(q: np.ndarray, spec: TensorSpec) -> np.ndarray:
    return (np.asarray(q, np.float64) - spec.zero_point) * spec.scale


@dataclass(frozen=True)
class TestInputs:
    x: np.ndarray               # (N, *input shape[1:]) int8, NHWC
    y: np.ndarray | None        # labels (classifier) or targets (denoiser); None when the bundle has none
    t: np.ndarray | None = None  # denoiser: the diffusion step of each input


def read_inputs(bundle: Bundle, limit: int | None = None) -> TestInputs:
    """The bundle's quantized test inputs (inputs.npz), checked against the input tensor."""
    if not bundle.inputs:
        raise UserError(f"{bundle.dir}/manifest.json: the bundle lists no test inputs ({INPUTS_FILE}); re-run "
                        "'tinyexit export' with this tinyexit, or bench with seeded random inputs")
    npz = bundle.file(bundle.inputs, "quantized test inputs")
    try:
        with np.load(npz, allow_pickle=False) as f:
            x = f["x"]
            y = f["y"] if "y" in f else None
            t = f["t"] if "t" in f else None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise UserError(f"{npz}: not a readable inputs file ({type(exc).__name__}: {exc}); re-run 'tinyexit "
                        "export'") from None
    want = tuple(bundle.input.shape[1:])
    if x.dtype != np.int8 or tuple(x.shape[1:]) != want or (y is not None and len(x) != len(y)):
        raise UserError(f"{npz}: x must be int8 of shape (N, {', '.join(map(str, want))}) with one label per "
                        f"row, got {x.dtype} {tuple(x.shape)} and {None if y is None else len(y)} labels; "
                        "re-run 'tinyexit export'")
    n = len(x) if limit is None else min(limit, len(x))
    return TestInputs(np.ascontiguousarray(x[:n]), None if y is None else np.asarray(y[:n]),
                      None if t is None else np.asarray(t[:n]))


def load_test_inputs(bundle: Bundle, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(x int8 NHWC, labels as int64) from the bundle's inputs.npz; a classifier bundle must carry labels."""
    got = read_inputs(bundle, limit)
    if got.y is None:
        raise UserError(f"{bundle.dir}/{INPUTS_FILE}: no labels (y); accuracy needs them, pass labelled inputs")
    return got.x, np.asarray(got.y, dtype=np.int64)


def synthetic_inputs(bundle: Bundle, n: int, seed: int = 0) -> np.ndarray:
    """Seeded inputs spread over the model's float input range, quantized: enough for timing and
    device-vs-host agreement when no test split fits the model (labels are then unknown)."""
    lo, hi = bundle.float_input_range
    rng = np.random.default_rng(seed)
    return quantize(rng.uniform(lo, hi, (n, *bundle.input.shape[1:])), bundle.input)
