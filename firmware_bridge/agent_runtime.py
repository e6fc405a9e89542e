"""Inference backends of the agent (and of the host reference): LiteRT and ONNX Runtime.

A backend runs one segment on int8 input and returns int8 (logits, features),
or the monolithic full-depth model.  Both run single-threaded by default: the
agent measures latency, and one thread is what a small device has.
"""
from __future__ import annotations

import numpy as np

from tinyexit.errors import UserError
from tinyexit.firmware_bridge import protocol_constants as pc
from tinyexit.firmware_bridge.artifact import Artifact, dequantize, quantize

RUNTIMES = ("litert", "onnxruntime")


class _SignatureCall:
    """Call one signature with fixed shapes.

    The public SignatureRunner resizes and re-allocates its subgraph on every
    call; with fixed shapes that is pure overhead that would be charged to the
    segments (the monolithic model pays it once, a chain once per segment), so
    the tensors are set directly when the runner exposes its wrapper.
    """

    def __init__(self, interpreter, key: str | None, out_names: tuple[str, ...]):
        self._runner = interpreter.get_signature_runner(key) if key else interpreter.get_signature_runner()
        ins = self._runner.get_input_details()
        outs = self._runner.get_output_details()
        missing = [n for n in out_names if n not in outs]
        if len(ins) != 1 or missing:
            raise UserError(f"signature '{key}': expected one input and outputs {list(out_names)}, found inputs "
                            f"{sorted(ins)} and outputs {sorted(outs)}; re-run 'tinyexit export'")
        (self._in_name, detail), = ins.items()
        self._in_index = detail["index"]
        self.input_shape = tuple(int(v) for v in detail["shape"])
        self._out = [(n, outs[n]["index"]) for n in out_names]
        self.out_quant = {n: tuple(outs[n]["quantization"]) for n in out_names}
        self._runner(**{self._in_name: np.zeros(self.input_shape, np.int8)})  # allocates the subgraph once
        wrapper = getattr(self._runner, "_interpreter_wrapper", None)
        sub = getattr(self._runner, "_subgraph_index", None)
        self._fast = wrapper is not None and sub is not None
        self._w, self._sub = wrapper, sub

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        if self._fast:
            self._w.SetTensor(self._in_index, x, self._sub)
            self._w.Invoke(self._sub)
            return [self._w.GetTensor(i, self._sub) for _, i in self._out]
        res = self._runner(**{self._in_name: x})
        return [res[n] for n, _ in self._out]


class LiteRTBackend:
    runtime_id = pc.RUNTIME_LITERT

    def __init__(self, art: Artifact, threads: int = 1, full: bool = True):
        try:
            import ai_edge_litert
            from ai_edge_litert.interpreter import Interpreter, OpResolverType
        except ImportError:
            raise UserError("ai-edge-litert is not installed; pip install 'tinyexit[agent]'") from None
        self.name = f"ai-edge-litert {getattr(ai_edge_litert, '__version__', '')}".strip()
        # Built-in kernels without the default XNNPACK delegate: the int8 kernels TFLite keeps bit-exact.
        opts = {"num_threads": threads, "experimental_op_resolver_type": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
        path = art.file(art.manifest.get("files", {}).get("tflite"), "multi-signature int8 TFLite")
        self._interp = _interpreter(Interpreter, path, opts)
        sigs = self._interp.get_signature_list()
        self._segments = []
        for seg in art.segments:
            if seg.signature not in sigs:
                raise UserError(f"{path}: signature '{seg.signature}' missing (has {sorted(sigs)}); re-run 'tinyexit export'")
            last = seg.index == art.n_segments - 1
            self._segments.append(_SignatureCall(self._interp, seg.signature, ("logits",) if last else ("logits", "features")))
        self._full = None
        entry = art.manifest.get("files", {}).get("full_tflite")
        if full and entry:
            fpath = art.file(entry, "full-depth int8 TFLite")
            self._full_interp = _interpreter(Interpreter, fpath, opts)
            fsigs = self._full_interp.get_signature_list()
            key = next(iter(fsigs)) if len(fsigs) == 1 else None
            self._full = _SignatureCall(self._full_interp, key, ("logits",)) if key else _PlainCall(self._full_interp)

    @property
    def has_full(self) -> bool:
        return self._full is not None

    def segment(self, k: int, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        outs = self._segments[k](x)
        return outs[0], (outs[1] if len(outs) > 1 else None)

    def full(self, x: np.ndarray) -> np.ndarray:
        return self._full(x)[0]


class _PlainCall:
    """A single-subgraph model without signatures: input 0 -> output 0."""

    def __init__(self, interp):
        interp.allocate_tensors()
        self._i = interp
        self._in = interp.get_input_details()[0]["index"]
        self._out = interp.get_output_details()[0]["index"]

    def __call__(self, x):
        self._i.set_tensor(self._in, x)
        self._i.invoke()
        return [self._i.get_tensor(self._out)]


def _interpreter(cls, path, opts):
    try:
        return cls(model_path=str(path), **opts)
    except (ValueError, RuntimeError) as exc:
        raise UserError(f"{path}: LiteRT cannot load it ({str(exc).splitlines()[0]}); re-run 'tinyexit export'") from None


class OnnxBackend:
    """Per-segment int8 ONNX files; float-interface (QDQ) models are fed and read through the manifest quantization."""

    runtime_id = pc.RUNTIME_ONNXRUNTIME

    def __init__(self, art: Artifact, threads: int = 1, full: bool = True):
        try:
            import onnxruntime as ort
        except ImportError:
            raise UserError("onnxruntime is not installed; pip install onnxruntime, or use --runtime litert") from None
        self.name = f"onnxruntime {ort.__version__}"
        self._art = art
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self._sessions = []
        for seg in art.segments:
            path = art.file(seg.files.get("onnx_int8"), f"int8 ONNX of segment {seg.index}")
            try:
                sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
            except Exception as exc:  # onnxruntime raises its own exception types for bad files
                raise UserError(f"{path}: ONNX Runtime cannot load it ({type(exc).__name__}); re-run 'tinyexit export'") from None
            inp = sess.get_inputs()[0]
            names = [o.name for o in sess.get_outputs()]
            self._sessions.append((sess, inp.name, inp.type == "tensor(int8)", names))
        self.has_full = False

    def segment(self, k: int, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        sess, in_name, int_in, names = self._sessions[k]
        seg = self._art.segments[k]
        feed = x if int_in else dequantize(x, seg.inputs[0]).astype(np.float32)
        outs = dict(zip(names, sess.run(None, {in_name: feed})))
        logits = outs.get("logits", list(outs.values())[0])
        feats = outs.get("features", list(outs.values())[1] if len(outs) > 1 else None)
        logits = _as_int8(logits, seg.outputs["logits"])
        feats = None if feats is None or k == self._art.n_segments - 1 else _as_int8(feats, seg.outputs["features"])
        return logits, feats

    def full(self, x: np.ndarray) -> np.ndarray:
        raise UserError("the onnxruntime agent has no monolithic full-depth model; use --runtime litert")


def _as_int8(values: np.ndarray, spec) -> np.ndarray:
    return values if values.dtype == np.int8 else quantize(values, spec)


def make_backend(art: Artifact, runtime: str = "litert", threads: int = 1, full: bool = True):
    if runtime not in RUNTIMES:
        raise UserError(f"runtime '{runtime}': choose one of {', '.join(RUNTIMES)}")
    if threads < 1:
        raise UserError(f"threads {threads}: must be >= 1")
    return (LiteRTBackend if runtime == "litert" else OnnxBackend)(art, threads, full)
