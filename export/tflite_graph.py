"""Read a .tflite flatbuffer (ops, tensors, quantization, MACs) and patch it in place.

Reading goes through the schema bindings shipped with ai-edge-litert, so the
verifier and tests need no TensorFlow.  Patching writes into the converter's
own bytes (same length, same alignment of every buffer) instead of
re-serializing: TFLite Micro reads weights in place, and the converter's
16-byte buffer alignment must survive.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tinyexit.errors import InternalError, UserError

_DTYPES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 7: "int16", 9: "int8", 6: "bool"}


def _schema():
    from ai_edge_litert import schema_py_generated as fb
    return fb


def _op_names() -> dict[int, str]:
    fb = _schema()
    return {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_") and isinstance(v, int)}


@dataclass
class TensorInfo:
    index: int
    name: str
    shape: list[int]
    dtype: str
    scale: list[float]
    zero_point: list[int]

    def io_dict(self, name: str | None = None) -> dict:
        """The manifest's tensor record (per-tensor quantization: one scale, one zero point)."""
        d = {"name": name or self.name, "shape": self.shape, "dtype": self.dtype}
        if self.scale:
            d["scale"] = self.scale[0]
            d["zero_point"] = self.zero_point[0]
        return d


@dataclass
class OpInfo:
    type: str
    inputs: list[int]
    outputs: list[int]
    macs: int


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
    if len(buf) < 8 or bytes(buf[4:8]) != b"TFL3":
        raise UserError(f"{label}: not a TFLite flatbuffer (missing 'TFL3' identifier); re-run 'tinyexit export'")
    try:
        model = fb.Model.GetRootAs(buf, 0)
        names = _op_names()
        codes = [max(model.OperatorCodes(i).BuiltinCode(), model.OperatorCodes(i).DeprecatedBuiltinCode())
                 for i in range(model.OperatorCodesLength())]
        buffer_sizes = [model.Buffers(i).DataLength() for i in range(model.BuffersLength())]
        subgraphs = [_subgraph(model.Subgraphs(s), s, codes, names, buffer_sizes)
                     for s in range(model.SubgraphsLength())]
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
    return subgraphs


def _tensor(t, index: int) -> TensorInfo:
    q = t.Quantization()
    scale = [float(s) for s in q.ScaleAsNumpy()] if q is not None and q.ScaleLength() else []
    zps = [int(z) for z in q.ZeroPointAsNumpy()] if q is not None and q.ZeroPointLength() else []
    shape = [int(d) for d in t.ShapeAsNumpy()] if t.ShapeLength() else []
    return TensorInfo(index, t.Name().decode(), shape, _DTYPES.get(t.Type(), str(t.Type())), scale, zps)


def _subgraph(sg, index, codes, names, buffer_sizes) -> SubgraphInfo:
    tensors = [_tensor(sg.Tensors(i), i) for i in range(sg.TensorsLength())]
    ops, const_buffers = [], set()
    for i in range(sg.OperatorsLength()):
        op = sg.Operators(i)
        ins = [int(v) for v in op.InputsAsNumpy()] if op.InputsLength() else []
        outs = [int(v) for v in op.OutputsAsNumpy()] if op.OutputsLength() else []
        kind = names.get(codes[op.OpcodeIndex()], f"BUILTIN_{codes[op.OpcodeIndex()]}")
        ops.append(OpInfo(kind, ins, outs, op_macs(kind, [tensors[j].shape if j >= 0 else [] for j in ins],
                                                   tensors[outs[0]].shape if outs else [])))
        for j in ins:
            b = sg.Tensors(j).Buffer() if j >= 0 else 0
            if b and buffer_sizes[b]:
                const_buffers.add(b)
    param_bytes = sum(buffer_sizes[b] for b in const_buffers)
    inputs = [int(v) for v in sg.InputsAsNumpy()]
    outputs = [int(v) for v in sg.OutputsAsNumpy()]
    name = sg.Name().decode() if sg.Name() else ""
    return SubgraphInfo(index, name, ops, tensors, inputs, outputs, param_bytes)


def op_macs(kind: str, in_shapes: list[list[int]], out_shape: list[int]) -> int:
    """MACs of one op from its tensor shapes (zero-padding taps included, as the analytic count does)."""
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
