"""Inference backends of the agent (and of the host reference): LiteRT, tflite_runtime and ONNX Runtime.

A backend runs one segment on int8 input and returns int8 (logits, features),
or the monolithic full-depth model.  Both run single-threaded by default: the
agent measures latency, and one thread is what a small device has.

`--runtime auto` takes the first runtime a device can import: ai-edge-litert
(aarch64, x86_64), else tflite_runtime (the only one with armv7l wheels), else
ONNX Runtime when the bundle carries per-segment int8 ONNX files.

Kernels: TFLite's optimized built-in int8 kernels are NOT bit-exact across
architectures, nor with the reference kernels on one machine: int8 logits differ
by an LSB (measured on the demo classifier: x86_64 vs aarch64, and optimized vs
reference on x86_64; docs/raspberry-pi.md).  The reference kernels
(OpResolverType.BUILTIN_REF) are portable C++: one runtime version gives the same
int8 results on x86_64 and aarch64 (two versions need not).  `kernels="reference"`
selects them; the bench compares like with like.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from tinyexit.errors import UserError
from tinyexit.firmware_bridge.protocol import constants as pc
from tinyexit.bundle import Bundle, dequantize, quantize

RUNTIMES = ("auto", "litert", "tflite_runtime", "onnxruntime")
KERNELS = ("optimized", "reference")
# The TFLite-flavoured runtimes, in the order `auto` tries them: (runtime, module, pip package).
_TFLITE_MODULES = (("litert", "ai_edge_litert", "ai-edge-litert"),
                   ("tflite_runtime", "tflite_runtime", "tflite-runtime"))


def _import_tflite(runtime: str):
    """(Interpreter, OpResolverType, version) of one TFLite-flavoured runtime, or ImportError."""
    import importlib

    module = dict((r, m) for r, m, _ in _TFLITE_MODULES)[runtime]
    root = importlib.import_module(module)
    interp = importlib.import_module(f"{module}.interpreter")
    return interp.Interpreter, interp.OpResolverType, getattr(root, "__version__", "")


def _has_onnx(art: Bundle) -> bool:
    return all(seg.files.get("onnx_int8") for seg in art.segments)


def resolve_runtime(requested: str, art: Bundle) -> str:
    """The runtime `auto` stands for on this machine (others are returned unchanged)."""
    if requested != "auto":
        return requested
    for runtime, _, _ in _TFLITE_MODULES:
        try:
            _import_tflite(runtime)
            return runtime
        except ImportError:
            continue
    if _has_onnx(art):
        try:
            import onnxruntime  # noqa: F401
            return "onnxruntime"
        except ImportError:
            pass
    onnx = ", or onnxruntime (the bundle has int8 ONNX files)" if _has_onnx(art) else ""
    raise UserError("--runtime auto: no inference runtime is installed; pip install ai-edge-litert (aarch64, "
                    f"x86_64) or tflite-runtime (armv7l){onnx}; see docs/raspberry-pi.md")


class _SignatureCall:
    """Call one signature with fixed shapes, through zero-copy views of its input and output tensors.

    The public SignatureRunner resizes, re-allocates and copies on every call;
    with fixed shapes that is pure overhead, and it would be charged to the
    segments (a chain pays it once per segment, the monolithic model once).
    When the runner exposes its wrapper, the input is copied into the tensor's
    own buffer and the outputs are returned as views, valid until this
    signature runs again; otherwise the public runner is used.
    """

    def __init__(self, interpreter, key: str | None, out_names: tuple[str, ...] | None):
        self._runner = interpreter.get_signature_runner(key) if key else interpreter.get_signature_runner()
        ins = self._runner.get_input_details()
        outs = self._runner.get_output_details()
        out_names = tuple(outs) if out_names is None else out_names
        missing = [n for n in out_names if n not in outs]
        if len(ins) != 1 or missing:
            raise UserError(f"signature '{key}': expected one input and outputs {list(out_names)}, found inputs "
                            f"{sorted(ins)} and outputs {sorted(outs)}; re-run 'tinyexit export'")
        (self._in_name, detail), = ins.items()
        self.input_shape = tuple(int(v) for v in detail["shape"])
        self.out_names = out_names
        self._runner(**{self._in_name: np.zeros(self.input_shape, np.int8)})  # allocates the subgraph once
        w = getattr(self._runner, "_interpreter_wrapper", None)
        sub = getattr(self._runner, "_subgraph_index", None)
        self._fast = w is not None and sub is not None and hasattr(w, "tensor")
        if self._fast:
            self._w, self._sub = w, sub
            self._in_view = w.tensor(w, detail["index"], sub)
            self._out_views = [w.tensor(w, outs[n]["index"], sub) for n in out_names]

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        if self._fast:
            np.copyto(self._in_view, x.reshape(self.input_shape))
            self._w.Invoke(self._sub)
            return self._out_views
        res = self._runner(**{self._in_name: x})
        return [res[n] for n in self.out_names]


class LiteRTBackend:
    """The multi-signature TFLite file (and the monolithic ones) through ai-edge-litert or tflite_runtime."""

    runtime_id = pc.RUNTIME_LITERT

    def __init__(self, art: Bundle, threads: int = 1, full: bool = True, kernels: str = "optimized",
                 module: str = "litert"):
        try:
            Interpreter, OpResolverType, version = _import_tflite(module)
        except ImportError:
            pkg = dict((r, p) for r, _, p in _TFLITE_MODULES)[module]
            raise UserError(f"{pkg} is not installed; pip install {pkg}, or choose another --runtime "
                            "(docs/raspberry-pi.md)") from None
        self.kernels = kernels
        prefix = "ai-edge-litert" if module == "litert" else "tflite_runtime"
        self.name = f"{prefix} {version} {kernels}".replace("  ", " ")
        # optimized: TFLite's built-in optimized kernels, without the default XNNPACK delegate (a third kernel
        # set, whose partitioning of each subgraph would also shift the per-segment timings);
        # reference: BUILTIN_REF, portable kernels, bit-identical across architectures for one runtime version.
        kind = OpResolverType.BUILTIN_REF if kernels == "reference" else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        opts = {"num_threads": threads, "experimental_op_resolver_type": kind}
        self._art, self._keep = art, []
        path = art.file(art.manifest.get("files", {}).get("tflite"), "multi-signature int8 TFLite")
        self._interp = _interpreter(Interpreter, path, opts)
        sigs = self._interp.get_signature_list()
        self._segments = []
        for seg in art.segments:
            if seg.signature not in sigs:
                raise UserError(f"{path}: signature '{seg.signature}' missing (has {sorted(sigs)}); "
                                "re-run 'tinyexit export'")
            last = seg.index == art.n_segments - 1
            outs = ("logits",) if last else ("logits", "features")
            self._segments.append(_SignatureCall(self._interp, seg.signature, outs))
        files = art.manifest.get("files", {})
        self._full = self._monolithic(Interpreter, opts, files.get("full_tflite"), "full-depth int8 TFLite",
                                      ("logits",)) if full else None
        # Optional: every exit in one subgraph, the fair baseline for the cost of splitting into segments.
        self._all_exits = self._monolithic(Interpreter, opts, files.get("all_exits_tflite"),
                                           "all-exits int8 TFLite", None) if full else None

    def _monolithic(self, cls, opts, entry, what, out_names):
        if not entry:
            return None
        path = self._art.file(entry, what)
        interp = _interpreter(cls, path, opts)
        self._keep.append(interp)
        sigs = interp.get_signature_list()
        if len(sigs) != 1:
            raise UserError(f"{path}: expected one signature, found {sorted(sigs)}; re-run 'tinyexit export'")
        call = _SignatureCall(interp, next(iter(sigs)), out_names)
        if "logits" not in call.out_names:
            raise UserError(f"{path}: no output named 'logits'; re-run 'tinyexit export'")
        return call

    @property
    def has_full(self) -> bool:
        return self._full is not None

    @property
    def has_all_exits(self) -> bool:
        return self._all_exits is not None

    def segment(self, k: int, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(logits copy, features) of segment k; features may be a view valid until segment k runs again."""
        outs = self._segments[k](x)
        return outs[0].copy(), (outs[1] if len(outs) > 1 else None)

    def full(self, x: np.ndarray, variant: int = 0) -> np.ndarray:
        """Logits of the monolithic model: 0 = full depth (last head only), 1 = every exit in one subgraph."""
        call = self._full if variant == 0 else self._all_exits
        outs = call(x)
        logits = outs[call.out_names.index("logits")].copy()
        for other in outs[1:]:  # every exit's logits leave the model, as they do from a chain
            other.copy()
        return logits


def _interpreter(cls, path, opts):
    try:
        return cls(model_path=str(path), **opts)
    except (ValueError, RuntimeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"{path}: LiteRT cannot load it ({reason}); re-run 'tinyexit export'") from None


class OnnxBackend:
    """Per-segment int8 ONNX files (QDQ, exported from PyTorch: NCHW, float interface).

    The device buffers and the protocol carry int8 NHWC as in the manifest, so
    inputs are dequantized and transposed on the way in, and outputs transposed
    and quantized with the manifest's parameters on the way out.  A file with an
    int8 interface is fed int8 directly.  `manifest["onnx_layout"]` may say "NHWC".
    """

    runtime_id = pc.RUNTIME_ONNXRUNTIME

    def __init__(self, art: Bundle, threads: int = 1, full: bool = True, kernels: str = "optimized"):
        if kernels != "optimized":
            raise UserError(f"--kernels {kernels}: ONNX Runtime has only its optimized kernels; "
                            "use --runtime litert or tflite_runtime for the reference kernels")
        try:
            import onnxruntime as ort
        except ImportError:
            raise UserError("onnxruntime is not installed; pip install onnxruntime, or use --runtime litert") from None
        self.kernels = kernels
        self.name = f"onnxruntime {ort.__version__} {kernels}"
        self._art = art
        self._nchw = art.manifest.get("onnx_layout", "NCHW") == "NCHW"
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self._sessions = []
        for seg in art.segments:
            path = art.file(seg.files.get("onnx_int8"), f"int8 ONNX of segment {seg.index}")
            try:
                sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
            except Exception as exc:  # onnxruntime raises its own exception types for bad files
                raise UserError(f"{path}: ONNX Runtime cannot load it ({type(exc).__name__}); "
                                "re-run 'tinyexit export'") from None
            inp = sess.get_inputs()[0]
            names = [o.name for o in sess.get_outputs()]
            if "logits" not in names or (seg.index + 1 < art.n_segments and "features" not in names):
                raise UserError(f"{path}: outputs {names}; need 'logits' (and 'features'); re-run 'tinyexit export'")
            self._sessions.append((sess, inp.name, inp.type == "tensor(int8)"))
        self.has_full = False
        self.has_all_exits = False

    def segment(self, k: int, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        sess, in_name, int_in = self._sessions[k]
        seg = self._art.segments[k]
        feed = np.asarray(x).reshape(seg.inputs[0].shape)
        if not int_in:
            feed = dequantize(feed, seg.inputs[0]).astype(np.float32)
        if self._nchw and feed.ndim == 4:
            feed = np.ascontiguousarray(feed.transpose(0, 3, 1, 2))
        wanted = ["logits"] if k == self._art.n_segments - 1 else ["logits", "features"]
        outs = dict(zip(wanted, sess.run(wanted, {in_name: feed})))
        logits = _as_int8(outs["logits"], seg.outputs["logits"])
        feats = outs.get("features")
        if feats is not None:
            if self._nchw and feats.ndim == 4:
                feats = np.ascontiguousarray(feats.transpose(0, 2, 3, 1))
            feats = _as_int8(feats, seg.outputs["features"])
        return logits, feats

    def full(self, x: np.ndarray, variant: int = 0) -> np.ndarray:
        raise UserError("the onnxruntime agent has no monolithic full-depth model; use --runtime litert")


class TflmBackend:
    """TensorFlow Lite Micro's Python interpreter on the per-segment files: the host reference for
    firmware targets (generated C and TFLM are checked byte for byte against it by the firmware's tests)."""

    runtime_id = pc.RUNTIME_TFLM

    def __init__(self, art: Bundle, threads: int = 1, full: bool = True, kernels: str = "reference"):
        try:
            from tflite_micro.python.tflite_micro import runtime
        except ImportError:
            raise UserError("the TFLite Micro reference needs the 'tflite-micro' package "
                            "(pip install 'tinyexit[export]')") from None
        self.name = "tflite-micro"
        self.kernels = "reference"  # TFLM's kernels are the reference kernels
        self._art = art
        self._segments = []
        for seg in art.segments:
            path = art.file(seg.files.get("tflm"), f"TFLite Micro file of segment {seg.index}")
            # The manifest lists each segment's outputs in subgraph order.
            order = list(seg.outputs)
            self._segments.append((_tflm(runtime, path), order.index("logits"),
                                   order.index("features") if "features" in order else None))
        files = art.manifest.get("files", {})
        self._full = self._mono(runtime, files.get("full_tflite"), "full-depth int8 TFLite") if full else None
        self._all = self._mono(runtime, files.get("all_exits_tflite"), "all-exits int8 TFLite") if full else None
        self.has_full, self.has_all_exits = self._full is not None, self._all is not None

    def _mono(self, runtime, entry, what):
        if not entry:
            return None
        path = self._art.file(entry, what)
        from ai_edge_litert.interpreter import Interpreter

        lite = Interpreter(model_path=str(path))  # only to find which subgraph output is "logits"
        (key,) = lite.get_signature_list()
        index = lite.get_signature_runner(key).get_output_details()["logits"]["index"]
        position = [d["index"] for d in lite.get_output_details()].index(index)
        return _tflm(runtime, path), position

    def segment(self, k: int, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        interp, li, fi = self._segments[k]
        interp.set_input(np.asarray(x, np.int8).reshape(self._art.segments[k].inputs[0].shape), 0)
        interp.invoke()
        feats = None if fi is None else interp.get_output(fi).copy()
        return interp.get_output(li).copy(), feats

    def full(self, x: np.ndarray, variant: int = 0) -> np.ndarray:
        interp, position = self._full if variant == 0 else self._all
        interp.set_input(np.asarray(x, np.int8).reshape(self._art.input.shape), 0)
        interp.invoke()
        return interp.get_output(position).copy()


def _tflm(runtime, path):
    blob = Path(path).read_bytes()
    return runtime.Interpreter.from_bytes(blob, arena_size=max(256 * 1024, 20 * len(blob)))


def _as_int8(values: np.ndarray, spec) -> np.ndarray:
    return values if values.dtype == np.int8 else quantize(values, spec)


def make_backend(art: Bundle, runtime: str = "litert", threads: int = 1, full: bool = True,
                 kernels: str = "optimized"):
    """A backend by name ("auto" resolves on this machine); "tflm" is offered for the host reference of
    firmware targets."""
    if runtime not in (*RUNTIMES, "tflm"):
        raise UserError(f"runtime '{runtime}': choose one of {', '.join(RUNTIMES)}")
    if kernels not in KERNELS:
        raise UserError(f"--kernels {kernels}: choose one of {', '.join(KERNELS)}")
    if threads < 1:
        raise UserError(f"threads {threads}: must be >= 1")
    runtime = resolve_runtime(runtime, art)
    if runtime in ("litert", "tflite_runtime"):
        return LiteRTBackend(art, threads, full, kernels, module=runtime)
    if runtime == "tflm":
        return TflmBackend(art, threads, full)
    return OnnxBackend(art, threads, full, kernels)
