"""Run exported segments on each runtime, chained through the boundaries as a device chains them.

Every chain returns, per exit, the logits of all samples; int8 chains also
return the raw int8 tensors.  The int8 chains never dequantize between
segments: features-k go into segment k+1 as the int8 bytes they are.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tinyexit.errors import UserError


@dataclass
class ChainResult:
    logits: list[np.ndarray]                              # per exit, float (dequantized for int8), N x ...
    int8: list[dict[str, np.ndarray]] = field(default_factory=list)   # per exit: name -> int8 N x ...
    inputs: list[np.ndarray] = field(default_factory=list)            # per segment: int8 inputs it was fed


def quantize(x: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """TFLite's QUANTIZE: round half away from zero, add the zero point, saturate to int8."""
    v = np.asarray(x, dtype=np.float32) / np.float32(scale)
    r = np.sign(v) * np.floor(np.abs(v) + 0.5)
    return np.clip(r + zero_point, -128, 127).astype(np.int8)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return (q.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)


def to_nhwc(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.transpose(x, (0, 2, 3, 1))) if x.ndim == 4 else x


def torch_chain(model, x_nchw: np.ndarray) -> ChainResult:
    import torch

    logits = []
    with torch.no_grad():
        x = torch.from_numpy(x_nchw)
        for seg in model.segments:
            out = seg(x)
            logits.append(to_nhwc((out if seg.last else out[0]).numpy()))
            if not seg.last:
                x = out[1]
    return ChainResult(logits)


def ort_chain(paths: list[Path], x_nchw: np.ndarray) -> ChainResult:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    logits, x = [], x_nchw
    for path in paths:
        try:
            sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise UserError(f"{path}: ONNX Runtime cannot load it ({type(exc).__name__}); "
                            "re-run 'tinyexit export'") from None
        outs = sess.run(None, {"x": x})
        logits.append(to_nhwc(outs[0]))
        if len(outs) > 1:
            x = outs[1]
    return ChainResult(logits)


def litert_interpreter(buf: bytes, label: str, reference: bool = False):
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    except ImportError:  # ai-edge-litert needs numpy >= 2 wheels; old boards may only have tflite_runtime
        from tflite_runtime.interpreter import Interpreter, OpResolverType

    kind = OpResolverType.BUILTIN_REF if reference else OpResolverType.AUTO
    try:
        return Interpreter(model_content=buf, num_threads=1, experimental_op_resolver_type=kind)
    except Exception as exc:
        raise UserError(f"{label}: LiteRT cannot load it ({type(exc).__name__}); re-run 'tinyexit export'") from None


def check_loads(path: Path) -> None:
    """A TFLite file LiteRT can allocate (catches damage the flatbuffer reader cannot see)."""
    interp = litert_interpreter(Path(path).read_bytes(), str(path))
    try:
        interp.allocate_tensors()
    except Exception as exc:
        raise UserError(f"{path}: LiteRT cannot prepare it ({type(exc).__name__}); re-run 'tinyexit export'") from None


def litert_chain(path: Path, manifest: dict, x_nhwc: np.ndarray) -> ChainResult:
    """The multi-signature file, one signature per segment, int8 features handed on unchanged."""
    interp = litert_interpreter(Path(path).read_bytes(), str(path))
    return litert_chain_with([interp.get_signature_runner(s["signature"]) for s in manifest["segments"]],
                             manifest, x_nhwc)


def litert_chain_with(runners: list, manifest: dict, x_nhwc: np.ndarray) -> ChainResult:
    return _chain(manifest, x_nhwc, lambda k, q: runners[k](x=q[None]))


def segment_runner_litert_ref(path: Path):
    """Single-subgraph file on LiteRT's reference kernels: int8 input -> [int8 outputs in subgraph order]."""
    interp = litert_interpreter(Path(path).read_bytes(), str(path), reference=True)
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]["index"]
    outs = [d["index"] for d in interp.get_output_details()]

    def run(q: np.ndarray) -> list[np.ndarray]:
        interp.set_tensor(inp, q[None])
        interp.invoke()
        return [interp.get_tensor(i)[0].copy() for i in outs]
    return run


def segment_runner_tflm(path: Path, n_outputs: int):
    """Single-subgraph file on the TFLite Micro interpreter (subgraph 0, outputs in subgraph order)."""
    from tflite_micro.python.tflite_micro import runtime

    buf = Path(path).read_bytes()
    try:
        interp = runtime.Interpreter.from_bytes(buf, arena_size=max(64 * 1024, 16 * len(buf)))
    except Exception as exc:
        raise UserError(f"{path}: TFLite Micro cannot load it ({type(exc).__name__}); re-run 'tinyexit export'") \
            from None

    def run(q: np.ndarray) -> list[np.ndarray]:
        interp.set_input(q[None], 0)
        interp.invoke()
        return [np.asarray(interp.get_output(i))[0].copy() for i in range(n_outputs)]
    return run


def per_segment_chain(runners: list, manifest: dict, x_nhwc: np.ndarray) -> ChainResult:
    return _chain(manifest, x_nhwc, lambda k, q: _named(manifest["segments"][k], runners[k](q)))


def _named(seg: dict, outs: list[np.ndarray]) -> dict:
    return {o["name"]: v for o, v in zip(seg["outputs"], outs)}


def _chain(manifest: dict, x_nhwc: np.ndarray, run) -> ChainResult:
    """Run segment by segment over all samples; `run(k, int8 sample)` returns {name: int8 array}."""
    segs = manifest["segments"]
    inp = segs[0]["inputs"][0]
    q = quantize(x_nhwc, inp["scale"], inp["zero_point"])
    logits, raw, fed = [], [], []
    for k, seg in enumerate(segs):
        fed.append(q)
        rows = [run(k, q[i]) for i in range(len(q))]
        outs = {o["name"]: np.stack([np.asarray(r[o["name"]]).reshape(o["shape"][1:]) for r in rows])
                for o in seg["outputs"]}
        lo = next(o for o in seg["outputs"] if o["name"] == "logits")
        logits.append(dequantize(outs["logits"], lo["scale"], lo["zero_point"]))
        raw.append(outs)
        if "features" in outs:
            q = outs["features"]
    return ChainResult(logits, raw, fed)
