"""Stage entry: `import_tflite(paths, run_dir, ImportConfig) -> manifest`, i.e. `tinyexit import`.

A user's full-int8 .tflite file (or several: the segments of an early-exit model,
in order) becomes a standard export bundle RUN/export/<name>/ — the contract
`tinyexit export` writes (docs/artifacts.md) — so firmware, bench, report and
check work on it unchanged.  Every file is checked before anything is written,
and refused with one line naming the file and the fix: not a TFLite file, float
I/O, operators or quantization the C kernels cannot run, a broken segment
boundary.  The user's bytes are kept (TFLite Micro and the C generator read them
in place); only the I/O tensors are renamed x / logits / features and the
outputs ordered logits first, in place.  The agent gets a multi-signature copy
(export/tflite_signatures.py).
"""
from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tinyexit.errors import InternalError, UserError
from tinyexit.export import manifest as mf, tflite_graph as tg

IMPORTED_POLICY_RULE = ("tinyexit's default max-softmax threshold: the imported files carry none "
                        "(try others with 'tinyexit report RUN --threshold T')")
FLOAT_IO_FIX = ("convert it to full int8 with TFLiteConverter: optimizations=[tf.lite.Optimize.DEFAULT], a "
                "representative_dataset, target_spec.supported_ops=[tf.lite.OpsSet.TFLITE_BUILTINS_INT8], "
                "inference_input_type=tf.int8, inference_output_type=tf.int8")
WEIGHTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


@dataclass(frozen=True)
class ImportConfig:
    name: str = ""                 # bundle folder and C symbol prefix; "" = the first file's stem
    inputs: str | None = None      # DATA.npz: x (N, H, W, C) float or int8, optional y (N,) labels
    threshold: float = 0.9         # the exit policy of a multi-segment import (provenance "imported")
    generate_c: bool = True

    def __post_init__(self):
        if self.name and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,31}", self.name):
            raise UserError(f"--name '{self.name}': must be a C identifier (letters, digits, _; at most 32)")
        if not 0.0 <= self.threshold <= 1.0:
            raise UserError(f"--threshold {self.threshold}: must be in [0, 1]")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ImportConfig":
        return cls(**d)


def default_name(path: str | Path) -> str:
    stem = re.sub(r"[^A-Za-z0-9_]", "_", Path(path).name.split(".")[0]) or "model"
    return ("m_" + stem if stem[0].isdigit() else stem)[:32]


def import_tflite(paths: list[str | Path], run_dir: str | Path, cfg: ImportConfig = ImportConfig(),
                  progress=print) -> dict:
    if not paths:
        raise UserError("tinyexit import: name at least one .tflite file")
    blobs = [_read(Path(p)) for p in paths]
    graphs = [check_segment(blob, str(p)) for blob, p in zip(blobs, paths)]
    roles = segment_roles(graphs)
    name = cfg.name or default_name(paths[0])
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    dest = run / "export" / name
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=dest.parent))
    try:
        man = _write(tmp, name, blobs, roles, paths, cfg)
        from tinyexit.rundir import write_json
        write_json(tmp / "manifest.json", man)
        from tinyexit.export.exporter import swap_in
        swap_in(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    from tinyexit.rundir import update_config
    update_config(run, f"import:{name}", {**cfg.to_dict(), "name": name, "files": [str(p) for p in paths]})
    progress(f"import: {name}: {len(blobs)} segment(s), {man['full_macs']:,} MACs -> {dest}")
    if cfg.generate_c:
        from tinyexit.export.codegen import generate_c_for_run
        generate_c_for_run(run, name)
    return man


def _read(path: Path) -> bytes:
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror}); pass an existing .tflite file") from None
    if len(blob) < 8 or blob[4:8] != b"TFL3":
        raise UserError(f"{path}: not a TFLite file (no 'TFL3' identifier); pass a .tflite flatbuffer")
    return blob


def check_segment(blob: bytes, label: str) -> tg.SubgraphInfo:
    """The file's one subgraph, refused (one line) unless the C code generator can run it bit-exactly."""
    from tinyexit.export.codegen_lower import SUPPORTED_OPS, lower

    subgraphs = tg.read_model(blob, label)
    if len(subgraphs) != 1:
        raise UserError(f"{label}: has {len(subgraphs)} subgraphs; import one subgraph per file "
                        "(several files for the segments of an early-exit model)")
    g = subgraphs[0]
    io = [g.tensors[i] for i in g.inputs + g.outputs]
    floats = [t for t in io if t.dtype != "int8"]
    if floats:
        t = floats[0]
        raise UserError(f"{label}: input/output '{t.name}' is {t.dtype}, not int8; {FLOAT_IO_FIX}")
    per_channel_io = [t for t in io if len(t.scale) != 1]
    if per_channel_io:
        raise UserError(f"{label}: I/O tensor '{per_channel_io[0].name}' is not per-tensor quantized "
                        "(one scale and zero point needed)")
    bad = sorted({op.type for op in g.ops if op.type not in SUPPORTED_OPS})
    if bad:
        raise UserError(f"{label}: unsupported operator(s) {', '.join(bad)}; tinyexit's kernels run "
                        f"{', '.join(SUPPORTED_OPS)}")
    for op in g.ops:
        _check_quantization(g, op, label)
    lower(g)  # the C generator's own prepare: refuses any case its kernels cannot do, naming the op
    return g


def _check_quantization(g: tg.SubgraphInfo, op: tg.OpInfo, label: str) -> None:
    for i in op.inputs + op.outputs:
        t = g.tensors[i] if i >= 0 else None
        if t is None or t.is_const or t.dtype in ("int32",):
            continue
        if t.dtype != "int8":
            raise UserError(f"{label}: {op.type} (op #{op.index}) has a {t.dtype} tensor '{t.name}'; only int8 "
                            "activations are supported (int16 activations: re-quantize to int8)")
        if len(t.scale) != 1:
            raise UserError(f"{label}: {op.type} (op #{op.index}) activation '{t.name}' is per-channel quantized; "
                            "activations must be per-tensor")
    if op.type in WEIGHTED_OPS:
        w = g.tensors[op.inputs[1]]
        if w.dtype != "int8" or not w.is_const:
            raise UserError(f"{label}: {op.type} (op #{op.index}) weights '{w.name}' are {w.dtype}"
                            f"{'' if w.is_const else ', not constant'}; int8 constant weights only")
        if any(z != 0 for z in w.zero_point):
            raise UserError(f"{label}: {op.type} (op #{op.index}) weights '{w.name}' have non-zero zero points "
                            "(asymmetric weights); TFLite's int8 scheme needs symmetric weights")
        n_out = w.shape[3] if op.type == "DEPTHWISE_CONV_2D" else w.shape[0]
        axis = 3 if op.type == "DEPTHWISE_CONV_2D" else 0
        if len(w.scale) not in (1, n_out) or (len(w.scale) > 1 and w.quant_dim != axis):
            raise UserError(f"{label}: {op.type} (op #{op.index}) weights '{w.name}' have {len(w.scale)} scales on "
                            f"axis {w.quant_dim}; per-tensor or per-output-channel (axis {axis}) only")


def segment_roles(graphs: list[tg.SubgraphInfo]) -> list[dict]:
    """Per file: which tensor is x, logits and features, and the segment contract between files.

    An output named 'logits' / 'features' (tensor or signature name) is taken at its word; otherwise the
    features are the output shaped like the next segment's input."""
    roles = []
    for k, g in enumerate(graphs):
        last = k == len(graphs) - 1
        if len(g.inputs) != 1:
            raise UserError(f"{g.source}: has {len(g.inputs)} inputs; a segment takes exactly one")
        want = 1 if last else 2
        if len(g.outputs) != want:
            raise UserError(f"{g.source}: segment {k} of {len(graphs)} has {len(g.outputs)} outputs; "
                            f"{'the last segment returns only its logits' if last else 'it must return (logits, features)'}")
        if last:
            roles.append({"x": g.inputs[0], "logits": g.outputs[0], "features": None})
            continue
        nxt = graphs[k + 1].tensors[graphs[k + 1].inputs[0]]
        named = _by_name(g)
        feat = named.get("features")
        if feat is None:
            cands = [i for i in g.outputs if g.tensors[i].shape == nxt.shape and i != named.get("logits")]
            if len(cands) != 1:
                raise UserError(f"{g.source}: cannot tell logits from features ({len(cands)} outputs shaped like "
                                f"{graphs[k + 1].source}'s input {nxt.shape}); name the features output 'features'")
            feat = cands[0]
        f = g.tensors[feat]
        if f.shape != nxt.shape or np.float32(f.scale[0]).tobytes() != np.float32(nxt.scale[0]).tobytes() \
                or f.zero_point[0] != nxt.zero_point[0]:
            raise UserError(f"{g.source} -> {graphs[k + 1].source}: features {f.shape} (scale {f.scale[0]!r}, zp "
                            f"{f.zero_point[0]}) differ from the next segment's input {nxt.shape} (scale "
                            f"{nxt.scale[0]!r}, zp {nxt.zero_point[0]}); the boundary quantization must be "
                            "bit-identical")
        roles.append({"x": g.inputs[0], "logits": next(i for i in g.outputs if i != feat), "features": feat})
    return roles


def _by_name(g: tg.SubgraphInfo) -> dict:
    names = {v: k for k, v in g.sig_outputs.items()}
    out = {}
    for i in g.outputs:
        for n in (names.get(i, ""), g.tensors[i].name.split(":")[0].split(";")[0]):
            if n in ("logits", "features"):
                out[n] = i
    return out


def _canonical(buf: bytearray, role: dict) -> None:
    """Logits first, then features; I/O named x / logits / features where the name slot allows."""
    order = [role["logits"]] + ([role["features"]] if role["features"] is not None else [])
    tg.set_outputs_order(buf, 0, order)
    for key in ("x", "logits", "features"):
        if role.get(key) is not None:
            try:
                tg.rename_tensor(buf, 0, role[key], key)
            except InternalError:  # a name shorter than ours: roles still follow from shapes and order
                pass


def _write(out: Path, name: str, blobs: list[bytes], roles: list[dict], paths, cfg: ImportConfig) -> dict:
    import hashlib

    from tinyexit.export.tflite_signatures import merge_segments

    sources = [{"path": str(Path(p).resolve()), "sha256": hashlib.sha256(b).hexdigest()} for p, b in zip(paths, blobs)]
    bufs = [bytearray(b) for b in blobs]
    (out / "tflm").mkdir()
    seg_recs = []
    for k, (buf, role) in enumerate(zip(bufs, roles)):
        _canonical(buf, role)
        rel = f"tflm/segment_{k}.int8.tflite"
        (out / rel).write_bytes(buf)
        g = tg.read_model(bytes(buf), str(paths[k]))[0]
        g.sig_inputs = {"x": role["x"]}
        g.sig_outputs = {n: role[n] for n in ("logits", "features") if role[n] is not None}
        seg_recs.append(mf.segment_record(k, g, {"tflm": mf.file_record(out, rel)}))
    multi_name = f"{name}.int8.tflite"
    (out / multi_name).write_bytes(merge_segments([bytes(b) for b in bufs], roles))
    files = {"tflite": mf.file_record(out, multi_name)}
    inp = seg_recs[0]["inputs"][0]
    lo, hi = (-128 - inp["zero_point"]) * inp["scale"], (127 - inp["zero_point"]) * inp["scale"]
    full_macs = sum(s["macs"] for s in seg_recs)
    boundaries = [{"boundary": k, "scale": seg_recs[k]["outputs"][1]["scale"],
                   "zero_point": seg_recs[k]["outputs"][1]["zero_point"], "max_relative_adjustment": 0.0,
                   "identical": True} for k in range(len(seg_recs) - 1)]
    inputs = write_inputs(out, Path(cfg.inputs), inp) if cfg.inputs else None
    policy = None if len(seg_recs) == 1 else {
        "name": "max_softmax", "params": [float(cfg.threshold)],
        "provenance": {"source": "imported", "split": None, "rule": IMPORTED_POLICY_RULE, "chosen_value": None}}
    return mf.build(name, None, {"imported_from": sources}, {"import": cfg.to_dict()}, files, seg_recs, full_macs,
                    inp, (lo, hi), policy, boundaries, {"imported": True}, inputs, None)


def write_inputs(out: Path, npz: Path, spec: dict) -> dict:
    """--inputs DATA.npz -> inputs.npz: x (N, H, W, C) float (quantized as the input is) or int8 (kept),
    y optional integer labels (N,)."""
    from tinyexit.bundle import INPUTS_FILE, TensorSpec, quantize

    try:
        with np.load(npz, allow_pickle=False) as f:
            x, y = f["x"], (f["y"] if "y" in f else None)
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(f"{npz}: not an .npz with an 'x' array ({type(exc).__name__}); save it with "
                        "np.savez(path, x=..., y=...)") from None
    want = tuple(spec["shape"][1:])
    if tuple(x.shape[1:]) != want:
        raise UserError(f"{npz}: x has shape {tuple(x.shape)}, the model takes (N, {', '.join(map(str, want))}) "
                        "NHWC; transpose NCHW data with np.transpose(x, (0, 2, 3, 1))")
    if x.dtype != np.int8:
        if not np.issubdtype(x.dtype, np.floating):
            raise UserError(f"{npz}: x is {x.dtype}; give float values (quantized with the model's input scale) "
                            "or int8 values already quantized")
        x = quantize(x, TensorSpec.from_dict(spec))
    if y is not None and (len(y) != len(x) or not np.issubdtype(y.dtype, np.integer)):
        raise UserError(f"{npz}: y must hold one integer label per row of x ({len(x)}), got {y.dtype} "
                        f"{tuple(y.shape)}")
    arrays = {"x": np.ascontiguousarray(x)}
    if y is not None:
        arrays["y"] = np.asarray(y, np.int64)
    with open(out / INPUTS_FILE, "wb") as f:
        np.savez(f, **arrays)
    return {**mf.file_record(out, INPUTS_FILE), "n": int(len(x)), "labels": y is not None, "timesteps": False,
            "source": f"imported from {npz.name}"}
