"""Read a single-subgraph int8 .tflite file into a small, explicit graph.

The flatbuffer is parsed with the schema module TensorFlow Lite Micro ships
(`tflite_micro...schema_py_generated`), so no TensorFlow import is needed.
Only what code generation uses is kept: tensors (shape, dtype, per-tensor or
per-channel quantization, constant data) and operators with their options
normalized to plain Python values.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from tinyexit.errors import UserError

SUPPORTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD", "MEAN", "AVERAGE_POOL_2D",
                 "PAD", "PADV2", "LOGISTIC", "QUANTIZE", "RESHAPE", "SQUEEZE")
_DTYPES = {"FLOAT32": np.float32, "INT32": np.int32, "INT8": np.int8, "UINT8": np.uint8,
           "INT16": np.int16, "INT64": np.int64, "BOOL": np.bool_}


@dataclass
class Tensor:
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str                      # "int8", "int32", ...
    scale: np.ndarray               # float32, empty when not quantized
    zero_point: np.ndarray          # int64
    quant_dim: int
    data: np.ndarray | None = None  # constant tensors only

    @property
    def is_const(self) -> bool:
        return self.data is not None

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize

    @property
    def qparams(self) -> tuple[float, int]:
        """Per-tensor (scale, zero point)."""
        if self.scale.size != 1:
            raise UserError(f"tensor '{self.name}': expected per-tensor quantization, found {self.scale.size} scales")
        return float(self.scale[0]), int(self.zero_point[0])


@dataclass
class Op:
    index: int
    kind: str
    inputs: list[int]
    outputs: list[int]
    options: dict = field(default_factory=dict)


@dataclass
class Graph:
    name: str
    tensors: list[Tensor]
    ops: list[Op]
    inputs: list[int]
    outputs: list[int]
    sha256: str


def _schema():
    try:
        from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as fb
    except ImportError:  # pragma: no cover - depends on the install
        raise UserError("reading .tflite files needs the 'tflite-micro' package; "
                        "install it with: pip install 'tinyexit[export]'") from None
    return fb


def _enum_names(cls) -> dict[int, str]:
    return {v: k for k, v in vars(cls).items() if not k.startswith("_") and isinstance(v, int)}


def read_tflite(data: bytes, name: str = "model.tflite") -> Graph:
    """Parse `data`; `name` is used in error messages only."""
    fb = _schema()
    data = bytes(data)
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise UserError(f"{name}: not a TFLite flatbuffer (no 'TFL3' identifier); re-run 'tinyexit export'")
    try:
        model = fb.ModelT.InitFromObj(fb.Model.GetRootAsModel(data, 0))
    except Exception as exc:  # flatbuffers raises assorted errors on truncated input
        raise UserError(f"{name}: corrupt or truncated .tflite ({type(exc).__name__}); re-run 'tinyexit export'") from None
    if not model.subgraphs or len(model.subgraphs) != 1:
        raise UserError(f"{name}: has {len(model.subgraphs or [])} subgraphs; code generation takes the "
                        "single-subgraph per-segment files (export/<model>/tflm/segment_k.int8.tflite)")
    sg = model.subgraphs[0]
    type_names = _enum_names(fb.TensorType)
    tensors = [_tensor(i, t, model.buffers, type_names, name) for i, t in enumerate(sg.tensors or [])]
    op_names = _enum_names(fb.BuiltinOperator)
    ops = []
    for i, op in enumerate(sg.operators or []):
        oc = model.operatorCodes[op.opcodeIndex]
        kind = op_names.get(max(oc.builtinCode, oc.deprecatedBuiltinCode), f"CUSTOM:{oc.customCode}")
        if kind not in SUPPORTED_OPS:
            raise UserError(f"{name}: operator {kind} (op #{i}) is not supported by the C code generator; "
                            f"supported: {', '.join(SUPPORTED_OPS)}")
        ops.append(Op(i, kind, [int(v) for v in op.inputs], [int(v) for v in op.outputs],
                      _options(op.builtinOptions, fb)))
    return Graph(name, tensors, ops, [int(v) for v in sg.inputs], [int(v) for v in sg.outputs],
                 hashlib.sha256(data).hexdigest())


def _tensor(i, t, buffers, type_names, fname) -> Tensor:
    tname = t.name.decode() if isinstance(t.name, bytes) else str(t.name)
    dtype_name = type_names.get(t.type, str(t.type))
    if dtype_name not in _DTYPES:
        raise UserError(f"{fname}: tensor '{tname}' has type {dtype_name}; only int8 graphs are supported")
    dtype = np.dtype(_DTYPES[dtype_name])
    shape = tuple(int(v) for v in (t.shape if t.shape is not None else []))
    q = t.quantization
    scale = np.asarray(q.scale if q is not None and q.scale is not None else [], dtype=np.float32)
    zp = np.asarray(q.zeroPoint if q is not None and q.zeroPoint is not None else [], dtype=np.int64)
    qdim = int(q.quantizedDimension) if q is not None else 0
    data = None
    buf = buffers[t.buffer] if t.buffer < len(buffers) else None
    if buf is not None and buf.data is not None and len(buf.data):
        raw = np.asarray(buf.data, dtype=np.uint8).tobytes()
        data = np.frombuffer(raw, dtype=dtype.newbyteorder("<")).astype(dtype).reshape(shape)
    elif buf is not None and getattr(buf, "offset", 0):
        raise UserError(f"{fname}: tensor '{tname}' stores its data outside the flatbuffer; not supported")
    return Tensor(i, tname, shape, dtype.name, scale, zp, qdim, data)


_ACT = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH", 5: "SIGN_BIT"}


def _options(opt, fb) -> dict:
    if opt is None:
        return {}
    out = {}
    pad_names = _enum_names(fb.Padding)
    for key, val in vars(opt).items():
        if key == "padding":
            out["padding"] = pad_names[val]
        elif key == "fusedActivationFunction":
            out["activation"] = _ACT.get(val, str(val))
        elif isinstance(val, (bool, int, float, str)) or val is None:
            out[key] = val
        elif isinstance(val, np.ndarray):
            out[key] = val.tolist()
    return out
