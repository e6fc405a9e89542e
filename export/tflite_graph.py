"""THE TFLite reader: a .tflite flatbuffer -> subgraphs of ops and tensors, with MACs; and in-place patches.

Every consumer in export reads .tflite files through `read_model` (the manifest writer,
the boundary pass, the C code generator); `op_macs` is the one MAC count over the
exported graph and `op_record` the per-op record a manifest carries.

Reading goes through the schema bindings shipped with ai-edge-litert, so no
TensorFlow import is needed.  Patching writes into the converter's own bytes
(same length, same alignment of every buffer) instead of re-serializing:
TFLite Micro reads weights in place, and the converter's 16-byte buffer
alignment must survive.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from tinyexit.errors import InternalError, UserError


def _schema():
    try:
        from ai_edge_litert import schema_py_generated as fb
    except ImportError:  # pragma: no cover - depends on the install
        raise UserError("reading .tflite files needs the 'ai-edge-litert' package; "
                        "install it with: pip install 'tinyexit[export]'") from None
    return fb


@lru_cache(maxsize=None)
def _enums() -> dict[str, dict[int, str]]:
    fb = _schema()

    def names(cls):
        return {v: k for k, v in vars(cls).items() if not k.startswith("_") and isinstance(v, int)}

    return {"op": names(fb.BuiltinOperator), "type": names(fb.TensorType), "padding": names(fb.Padding),
            "activation": names(fb.ActivationFunctionType)}


@dataclass
class TensorInfo:
    index: int
    name: str
    shape: list[int]
    dtype: str                       # "int8", "int32", "float32", ...
    scale: list[float]               # empty when not quantized; one per channel when per-channel
    zero_point: list[int]
    quant_dim: int = 0
    data: np.ndarray | None = None   # constant tensors only (read-only, in the tensor's dtype and shape)

    @property
    def is_const(self) -> bool:
        return self.data is not None

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize

    @property
    def qparams(self) -> tuple[float, int]:
        """Per-tensor (scale, zero point)."""
        if len(self.scale) != 1:
            raise UserError(f"tensor '{self.name}': expected per-tensor quantization, found {len(self.scale)} scales")
        return float(self.scale[0]), int(self.zero_point[0])

    def io_dict(self, name: str | None = None) -> dict:
        """The manifest's tensor record (per-tensor quantization: one scale, one zero point)."""
        d = {"name": name or self.name, "shape": list(self.shape), "dtype": self.dtype}
        if self.scale:
            d["scale"] = self.scale[0]
            d["zero_point"] = self.zero_point[0]
        return d

    def spec(self, name: str | None = None):
        """The same record as the bundle's typed TensorSpec (for tinyexit.bundle.check_boundary)."""
        from tinyexit.bundle import TensorSpec
        return TensorSpec.from_dict(self.io_dict(name))


@dataclass
class OpInfo:
    type: str                        # builtin operator name, e.g. "CONV_2D"
    inputs: list[int]                # tensor indices, -1 for an absent optional input
    outputs: list[int]
    macs: int                        # op_macs of its shapes
    index: int = 0                   # position in the subgraph
    options: dict = field(default_factory=dict)   # builtin options as plain values (camelCase keys;
    #                                  'padding' and 'activation' as names)
    input_shapes: list[list[int]] = field(default_factory=list)
    output_shapes: list[list[int]] = field(default_factory=list)
    const_inputs: list[bool] = field(default_factory=list)
    param_bytes: int = 0             # bytes of its constant inputs


@dataclass
class SubgraphInfo:
    index: int
    name: str
    ops: list[OpInfo]
    tensors: list[TensorInfo]
    inputs: list[int]
    outputs: list[int]
    param_bytes: int
    signature: str | None = None
    sig_inputs: dict = field(default_factory=dict)   # signature name -> tensor index
    sig_outputs: dict = field(default_factory=dict)
    source: str = "model"            # the file it was read from (for messages)
    sha256: str = ""                 # of the whole file

    @property
    def macs(self) -> int:
        return sum(op.macs for op in self.ops)

    def input_tensors(self) -> list[TensorInfo]:
        return [self.tensors[i] for i in self.inputs]

    def output_tensors(self) -> list[TensorInfo]:
        return [self.tensors[i] for i in self.outputs]


def read_file(path: Path) -> tuple[bytes, list[SubgraphInfo]]:
    path = Path(path)
    try:
        buf = path.read_bytes()
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror}); re-run 'tinyexit export'") from None
    return buf, read_model(buf, str(path))


def read_model(buf: bytes, label: str = "model") -> list[SubgraphInfo]:
    """Parse every subgraph; a malformed or truncated file becomes one UserError naming it."""
    fb = _schema()
    buf = bytes(buf)  # constant tensors are views into it: never into a buffer a patch may change
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise UserError(f"{label}: not a TFLite flatbuffer (missing 'TFL3' identifier); re-run 'tinyexit export'")
    try:
        model = fb.Model.GetRootAs(buf, 0)
        codes = [_opcode(model.OperatorCodes(i)) for i in range(model.OperatorCodesLength())]
        buffers = [model.Buffers(i) for i in range(model.BuffersLength())]
        subgraphs = [_subgraph(model.Subgraphs(s), s, codes, buffers, label) for s in range(model.SubgraphsLength())]
        for i in range(model.SignatureDefsLength()):
            sd = model.SignatureDefs(i)
            sg = subgraphs[sd.SubgraphIndex()]
            sg.signature = sd.SignatureKey().decode()
            sg.sig_inputs = {sd.Inputs(j).Name().decode(): sd.Inputs(j).TensorIndex() for j in range(sd.InputsLength())}
            sg.sig_outputs = {sd.Outputs(j).Name().decode(): sd.Outputs(j).TensorIndex()
                              for j in range(sd.OutputsLength())}
    except UserError:
        raise
    except Exception as exc:  # flatbuffers raises struct/index/unicode errors on damaged bytes
        detail = (str(exc).splitlines() or [type(exc).__name__])[0][:80]
        raise UserError(f"{label}: corrupt or truncated TFLite file ({len(buf)} bytes; {detail}); "
                        "re-run 'tinyexit export'") from None
    if not subgraphs:
        raise UserError(f"{label}: TFLite file has no subgraph; re-run 'tinyexit export'")
    digest = hashlib.sha256(buf).hexdigest()
    for sg in subgraphs:
        sg.sha256 = digest
    return subgraphs


def _opcode(oc) -> str:
    code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
    if code == _schema().BuiltinOperator.CUSTOM:
        return f"CUSTOM:{(oc.CustomCode() or b'').decode()}"
    return _enums()["op"].get(code, f"BUILTIN_{code}")


def _tensor(t, index: int, buffers, label: str) -> TensorInfo:
    q = t.Quantization()
    scale = [float(s) for s in q.ScaleAsNumpy()] if q is not None and q.ScaleLength() else []
    zps = [int(z) for z in q.ZeroPointAsNumpy()] if q is not None and q.ZeroPointLength() else []
    shape = [int(d) for d in t.ShapeAsNumpy()] if t.ShapeLength() else []
    dtype = _enums()["type"].get(t.Type(), str(t.Type())).lower()
    name = t.Name().decode()
    data = None
    b = buffers[t.Buffer()] if 0 < t.Buffer() < len(buffers) else None
    if b is not None and b.DataLength():
        try:
            data = b.DataAsNumpy().view(np.dtype(dtype).newbyteorder("<")).reshape(shape)
        except TypeError:  # a type numpy has no dtype for (string, int4, resource): bytes only
            data = None
    elif b is not None and b.Offset() > 1:
        raise UserError(f"{label}: tensor '{name}' stores its data outside the flatbuffer; not supported, "
                        "convert without external buffers")
    quant_dim = int(q.QuantizedDimension()) if q is not None else 0
    return TensorInfo(index, name, shape, dtype, scale, zps, quant_dim, data)


def _subgraph(sg, index, codes, buffers, label) -> SubgraphInfo:
    tensors = [_tensor(sg.Tensors(i), i, buffers, label) for i in range(sg.TensorsLength())]
    sizes = [b.DataLength() for b in buffers]
    ops, const_buffers = [], set()
    for i in range(sg.OperatorsLength()):
        op = sg.Operators(i)
        ins = [int(v) for v in op.InputsAsNumpy()] if op.InputsLength() else []
        outs = [int(v) for v in op.OutputsAsNumpy()] if op.OutputsLength() else []
        kind = codes[op.OpcodeIndex()]
        in_shapes = [tensors[j].shape if j >= 0 else [] for j in ins]
        out_shapes = [tensors[j].shape for j in outs]
        bufs = [sg.Tensors(j).Buffer() if j >= 0 else 0 for j in ins]
        const = [bool(b and sizes[b]) for b in bufs]
        mine = {b for b, c in zip(bufs, const) if c}
        const_buffers |= mine
        ops.append(OpInfo(kind, ins, outs, op_macs(kind, in_shapes, out_shapes[0] if outs else []), i,
                          _options(op), in_shapes, out_shapes, const, sum(sizes[b] for b in mine)))
    param_bytes = sum(sizes[b] for b in const_buffers)
    inputs = [int(v) for v in sg.InputsAsNumpy()]
    outputs = [int(v) for v in sg.OutputsAsNumpy()]
    name = sg.Name().decode() if sg.Name() else ""
    return SubgraphInfo(index, name, ops, tensors, inputs, outputs, param_bytes, source=label)


def _options(op) -> dict:
    """Builtin options as plain values: padding and fused activation by name, arrays as lists."""
    fb = _schema()
    opt = fb.BuiltinOptionsCreator(op.BuiltinOptionsType(), op.BuiltinOptions())
    if opt is None:
        return {}
    out = {}
    for key, val in vars(opt).items():
        if key == "padding":
            out["padding"] = _enums()["padding"].get(val, str(val))
        elif key == "fusedActivationFunction":
            out["activation"] = _enums()["activation"].get(val, str(val))
        elif isinstance(val, (bool, int, float, str)) or val is None:
            out[key] = val
        elif isinstance(val, np.ndarray):
            out[key] = val.tolist()
    return out


def op_macs(kind: str, in_shapes: list[list[int]], out_shape: list[int]) -> int:
    """THE MAC count of one op from its tensor shapes (zero-padding taps included, as the analytic count does).

    Everything that reports MACs of an exported graph (manifest, C code generator, firmware layer
    table) takes this number; other ops (ADD, MEAN, pooling, PAD, ...) count 0."""
    out_elems = int(np.prod(out_shape)) if out_shape else 0
    if kind == "CONV_2D":       # filter [O, kh, kw, I]
        _, kh, kw, c_in = in_shapes[1]
        return out_elems * kh * kw * c_in
    if kind == "DEPTHWISE_CONV_2D":   # filter [1, kh, kw, O]
        _, kh, kw, _ = in_shapes[1]
        return out_elems * kh * kw
    if kind == "FULLY_CONNECTED":     # weights [O, I]
        return out_elems * in_shapes[1][1]
    return 0


_KERNEL_FROM_FILTER = {"CONV_2D", "DEPTHWISE_CONV_2D"}
_POOLS = {"AVERAGE_POOL_2D", "MAX_POOL_2D"}


def op_record(op: OpInfo) -> dict:
    """One op as the manifest lists it: enough for a cost model that reads only the manifest.

    type, macs, the shapes of its activation inputs and of its outputs, the bytes of its constant
    inputs, and where they apply kernel [kh, kw], stride [sh, sw], dilation, padding and the fused
    activation."""
    rec = {"type": op.type, "macs": int(op.macs),
           "input_shapes": [list(s) for s, c in zip(op.input_shapes, op.const_inputs) if s and not c],
           "output_shapes": [list(s) for s in op.output_shapes], "param_bytes": int(op.param_bytes)}
    o = op.options
    if op.type in _KERNEL_FROM_FILTER and len(op.input_shapes) > 1 and len(op.input_shapes[1]) == 4:
        rec["kernel"] = list(op.input_shapes[1][1:3])
    elif op.type in _POOLS and "filterHeight" in o:
        rec["kernel"] = [o["filterHeight"], o["filterWidth"]]
    if "strideH" in o:
        rec["stride"] = [o["strideH"], o["strideW"]]
    if "dilationHFactor" in o:
        rec["dilation"] = [o["dilationHFactor"], o["dilationWFactor"]]
    if "padding" in o:
        rec["padding"] = o["padding"]
    if o.get("activation", "NONE") != "NONE":
        rec["activation"] = o["activation"]
    return rec


# ---- in-place patches -------------------------------------------------------------------------

def _tensor_table(buf: bytearray, subgraph: int, tensor: int):
    fb = _schema()
    return fb.Model.GetRootAs(buf, 0).Subgraphs(subgraph).Tensors(tensor)


def set_quantization(buf: bytearray, subgraph: int, tensor: int, scale: np.float32, zero_point: int) -> None:
    """Overwrite a per-tensor scale and zero point (same vector lengths, so no byte moves)."""
    q = _tensor_table(buf, subgraph, tensor).Quantization()
    if q is None or q.ScaleLength() != 1 or q.ZeroPointLength() != 1:
        raise InternalError(f"subgraph {subgraph} tensor {tensor}: not per-tensor quantized")
    q.ScaleAsNumpy()[0] = np.float32(scale)
    q.ZeroPointAsNumpy()[0] = np.int64(zero_point)


def rename_tensor(buf: bytearray, subgraph: int, tensor: int, name: str) -> None:
    """Write a shorter-or-equal name into the existing string (length prefix updated, rest zeroed)."""
    t = _tensor_table(buf, subgraph, tensor)
    tab = t._tab
    o = tab.Offset(10)  # Tensor.name
    if not o:
        raise InternalError(f"subgraph {subgraph} tensor {tensor}: has no name to replace")
    start = tab.Indirect(tab.Pos + o)
    old_len = int.from_bytes(buf[start:start + 4], "little")
    new = name.encode()
    if len(new) > old_len:
        raise InternalError(f"tensor name {name!r} longer than the converter's {old_len}-byte slot")
    buf[start:start + 4] = len(new).to_bytes(4, "little")
    buf[start + 4:start + 4 + old_len] = new + b"\0" * (old_len - len(new))


def set_outputs_order(buf: bytearray, subgraph: int, order: list[int]) -> None:
    """Rewrite a subgraph's output tensor list (a permutation of the present one)."""
    fb = _schema()
    outs = fb.Model.GetRootAs(buf, 0).Subgraphs(subgraph).OutputsAsNumpy()
    if sorted(int(v) for v in outs) != sorted(order):
        raise InternalError(f"subgraph {subgraph}: {order} is not a permutation of outputs {list(outs)}")
    outs[:] = np.asarray(order, dtype=outs.dtype)
