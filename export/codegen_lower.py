"""The "prepare" step on the host: one int8 subgraph (as tflite_graph reads it) -> layers with integer
parameters only.

Each layer holds everything its kernel needs (weights, folded biases, per-channel
multipliers and shifts, offsets, clamps, geometry), derived with
`tinyexit.export.int8_ref`, so the device only computes.  A layer's MACs are the
reader's count of its op (`tflite_graph.op_macs`), the number the manifest carries.  `run_layers` executes
the same layers with the NumPy reference: the generated C must match it, and it
must match TensorFlow Lite Micro, bit for bit.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tinyexit.errors import UserError
from tinyexit.export import int8_ref as ref
from tinyexit.export import tflite_graph as tg
from tinyexit.export.tflite_graph import OpInfo, SubgraphInfo, TensorInfo

SUPPORTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD", "MEAN", "AVERAGE_POOL_2D",
                 "PAD", "PADV2", "LOGISTIC", "QUANTIZE", "RESHAPE", "SQUEEZE", "SOFTMAX")


@dataclass
class Layer:
    """One kernel call.  `inputs`/`outputs` are activation tensor indices of the graph."""
    kind: str                     # conv, dwconv, fc, add, mean, avgpool, pad, logistic, softmax, requant, copy
    op: OpInfo
    inputs: list[int]
    outputs: list[int]
    macs: int = 0
    p: dict = field(default_factory=dict)   # integer parameters, see _lower_* for the keys

    @property
    def label(self) -> str:
        return f"{self.op.index}:{self.op.type}"


def read_segment(data: bytes, name: str = "model.tflite") -> SubgraphInfo:
    """The one subgraph of a per-segment file, read by tflite_graph; `name` is for messages only.

    Refuses up front, naming the op, any operator the C code generator has no kernel for."""
    subgraphs = tg.read_model(data, name)
    if len(subgraphs) != 1:
        raise UserError(f"{name}: has {len(subgraphs)} subgraphs; code generation takes the "
                        "single-subgraph per-segment files (export/<model>/tflm/segment_k.int8.tflite)")
    graph = subgraphs[0]
    for op in graph.ops:
        if op.type not in SUPPORTED_OPS:
            raise UserError(f"{name}: operator {op.type} (op #{op.index}) is not supported by the C code generator; "
                            f"supported: {', '.join(SUPPORTED_OPS)}")
    return graph


def lower(graph: SubgraphInfo) -> list[Layer]:
    """Prepare every op of `graph` (UserError naming the op for anything unsupported)."""
    return [_LOWER[op.type](graph, op) for op in graph.ops]


def _need(cond: bool, graph: SubgraphInfo, op: OpInfo, what: str) -> None:
    if not cond:
        raise UserError(f"{graph.source}: {op.type} (op #{op.index}) {what}; not supported by the C code generator")


def _t(graph: SubgraphInfo, idx: int) -> TensorInfo | None:
    return graph.tensors[idx] if idx >= 0 else None


def _act_io(graph: SubgraphInfo, op: OpInfo) -> tuple[TensorInfo, TensorInfo]:
    x, y = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    _need(x.dtype == "int8" and y.dtype == "int8", graph, op, f"has {x.dtype} -> {y.dtype} tensors (int8 only)")
    _need(not x.shape or x.shape[0] == 1, graph, op, f"has batch {x.shape[0] if x.shape else 0} (batch 1 only)")
    return x, y


def _conv_common(graph: SubgraphInfo, op: OpInfo, depthwise: bool) -> Layer:
    x, y = _act_io(graph, op)
    w, b = graph.tensors[op.inputs[1]], _t(graph, op.inputs[2] if len(op.inputs) > 2 else -1)
    _need(len(x.shape) == 4 and w.is_const and w.dtype == "int8", graph, op, "needs a 4-D input and constant int8 weights")
    o = op.options
    sh, sw = o.get("strideH", 1), o.get("strideW", 1)
    dh, dw = o.get("dilationHFactor", 1), o.get("dilationWFactor", 1)
    k_h, k_w = w.shape[1], w.shape[2]
    oh, pt = ref.conv_output_size(x.shape[1], k_h, sh, dh, o["padding"])
    ow, pl = ref.conv_output_size(x.shape[2], k_w, sw, dw, o["padding"])
    _need((oh, ow) == tuple(y.shape[1:3]), graph, op, f"output {y.shape} disagrees with its geometry ({oh}x{ow})")
    c_out = y.shape[3]
    in_scale, in_zp = x.qparams
    out_scale, out_zp = y.qparams
    w_scale = np.asarray(w.scale, np.float32)
    w_scales = w_scale if w_scale.size > 1 else np.repeat(w_scale, c_out)
    rq = ref.make_requant(in_scale, w_scales, out_scale, out_zp, o.get("activation", "NONE"))
    wd = w.data.astype(np.int64)
    if depthwise:
        mult = o.get("depthMultiplier") or c_out // x.shape[3]
        _need(c_out == x.shape[3] * mult, graph, op, "has a channel count that is not C_in x depth_multiplier")
        wsum = wd[0].sum(axis=(0, 1))
    else:
        mult = 1
        _need(w.shape[3] == x.shape[3], graph, op, "has grouped convolution (filter depth != input depth)")
        wsum = wd.reshape(c_out, -1).sum(axis=1)
    bias = b.data.astype(np.int64) if b is not None else np.zeros(c_out, np.int64)
    p = dict(in_shape=x.shape[1:], out_shape=y.shape[1:], k=(k_h, k_w), stride=(sh, sw), dilation=(dh, dw),
             pad=(pt, pl), in_zp=in_zp, weights=w.data, bias=bias, bias_folded=bias - in_zp * wsum,
             rq=rq, depth_multiplier=mult)
    return Layer("dwconv" if depthwise else "conv", op, [x.index], [y.index], op.macs, p)


def _lower_conv(graph, op):
    return _conv_common(graph, op, depthwise=False)


def _lower_dwconv(graph, op):
    return _conv_common(graph, op, depthwise=True)


def _lower_fc(graph: SubgraphInfo, op: OpInfo) -> Layer:
    x, y = _act_io(graph, op)
    w, b = graph.tensors[op.inputs[1]], _t(graph, op.inputs[2] if len(op.inputs) > 2 else -1)
    _need(w.is_const and w.dtype == "int8" and len(w.shape) == 2, graph, op, "needs constant 2-D int8 weights")
    n_out, k = w.shape
    _need(int(np.prod(x.shape)) == k and int(np.prod(y.shape)) == n_out, graph, op, "has batch > 1")
    in_scale, in_zp = x.qparams
    out_scale, out_zp = y.qparams
    act = op.options.get("activation", "NONE")
    w_scale = np.asarray(w.scale, np.float32)
    rq = ref.make_requant(in_scale, w_scale, out_scale, out_zp, act, per_tensor_fc=w_scale.size == 1)
    if rq.mult.size == 1:  # per-tensor: broadcast so every kernel sees one multiplier per output
        rq = ref.Requant(np.repeat(rq.mult, n_out), np.repeat(rq.shift, n_out), rq.out_zp, rq.act_min, rq.act_max)
    bias = b.data.astype(np.int64) if b is not None else np.zeros(n_out, np.int64)
    folded = bias - in_zp * w.data.astype(np.int64).sum(axis=1)
    p = dict(k=k, n_out=n_out, in_zp=in_zp, weights=w.data, bias=bias, bias_folded=folded, rq=rq)
    return Layer("fc", op, [x.index], [y.index], op.macs, p)


def _lower_add(graph: SubgraphInfo, op: OpInfo) -> Layer:
    a, b, y = (graph.tensors[i] for i in (*op.inputs[:2], op.outputs[0]))
    _need(a.shape == b.shape == y.shape, graph, op, f"broadcasts {a.shape} + {b.shape}")
    _need(not a.is_const and not b.is_const, graph, op, "adds a constant tensor")
    _need(all(t.dtype == "int8" for t in (a, b, y)), graph, op, "is not int8")
    params = ref.prepare_add(*a.qparams, *b.qparams, *y.qparams, op.options.get("activation", "NONE"))
    return Layer("add", op, [a.index, b.index], [y.index], 0, dict(size=int(np.prod(y.shape)), add=params))


def _lower_mean(graph: SubgraphInfo, op: OpInfo) -> Layer:
    x, y = _act_io(graph, op)
    axes_t = graph.tensors[op.inputs[1]]
    _need(axes_t.is_const, graph, op, "has a non-constant axis")
    axes = sorted(int(a) % len(x.shape) for a in np.ravel(axes_t.data))
    _need(len(x.shape) == 4 and axes == [1, 2], graph, op, f"reduces axes {axes} (only the spatial axes [1, 2])")
    (in_scale, in_zp), (out_scale, out_zp) = x.qparams, y.qparams
    count = x.shape[1] * x.shape[2]
    mult, shift = ref.mean_multiplier(in_scale, out_scale, count)
    p = dict(in_shape=x.shape[1:], in_zp=in_zp, out_zp=out_zp, mult=mult, shift=shift, count=count)
    return Layer("mean", op, [x.index], [y.index], 0, p)


def _lower_avgpool(graph: SubgraphInfo, op: OpInfo) -> Layer:
    x, y = _act_io(graph, op)  # like TFLite Micro: no rescaling, whatever the two scales say
    o = op.options
    k = (o["filterHeight"], o["filterWidth"])
    stride = (o["strideH"], o["strideW"])
    oh, pt = ref.conv_output_size(x.shape[1], k[0], stride[0], 1, o["padding"])
    ow, pl = ref.conv_output_size(x.shape[2], k[1], stride[1], 1, o["padding"])
    lo, hi = ref.activation_range(o.get("activation", "NONE"), *y.qparams)
    p = dict(in_shape=x.shape[1:], out_shape=(oh, ow, x.shape[3]), k=k, stride=stride, pad=(pt, pl),
             act_min=lo, act_max=hi)
    return Layer("avgpool", op, [x.index], [y.index], 0, p)


def _lower_pad(graph: SubgraphInfo, op: OpInfo) -> Layer:
    x, y = _act_io(graph, op)
    pads = graph.tensors[op.inputs[1]]
    _need(pads.is_const, graph, op, "has non-constant paddings")
    value = y.qparams[1]  # TFLite Micro copies the raw bytes and pads with the output zero point
    if op.type == "PADV2" and len(op.inputs) > 2:
        cv = graph.tensors[op.inputs[2]]
        _need(cv.is_const, graph, op, "has a non-constant pad value")
        value = int(np.ravel(cv.data)[0])
    paddings = np.asarray(pads.data, np.int64).reshape(-1, 2)
    _need(len(x.shape) == 4 and not paddings[0].any(), graph, op, "pads the batch axis or a non-4-D tensor")
    p = dict(in_shape=x.shape[1:], out_shape=y.shape[1:], paddings=paddings, value=value)
    return Layer("pad", op, [x.index], [y.index], 0, p)


def _lower_logistic(graph: SubgraphInfo, op: OpInfo) -> Layer:
    x, y = _act_io(graph, op)
    _need(y.qparams[1] == -128 and abs(y.qparams[0] - 1 / 256) < 1e-9, graph, op,
          "has an output quantization other than scale 1/256, zero point -128")
    lut = ref.logistic_lut(*x.qparams)
    return Layer("logistic", op, [x.index], [y.index], 0, dict(size=int(np.prod(x.shape)), lut=lut))


def _lower_softmax(graph: SubgraphInfo, op: OpInfo) -> Layer:
    x, y = _act_io(graph, op)
    _need(y.qparams[1] == -128 and abs(y.qparams[0] - 1 / 256) < 1e-9, graph, op,
          "has an output quantization other than scale 1/256, zero point -128")
    depth = x.shape[-1] if x.shape else 1
    _need(depth <= ref.SOFTMAX_MAX_DEPTH, graph, op, f"normalises over {depth} values (at most "
          f"{ref.SOFTMAX_MAX_DEPTH})")
    params = ref.prepare_softmax(x.qparams[0], op.options.get("beta", 1.0))
    size = int(np.prod(x.shape))
    return Layer("softmax", op, [x.index], [y.index], 0, dict(rows=size // depth, depth=depth, softmax=params))


def _lower_quantize(graph: SubgraphInfo, op: OpInfo) -> Layer:
    x, y = _act_io(graph, op)
    (si, zi), (so, zo) = x.qparams, y.qparams
    mult, shift = ref.quantize_multiplier(float(np.float32(si)) / float(np.float32(so)))
    p = dict(size=int(np.prod(x.shape)), in_zp=zi, out_zp=zo, mult=mult, shift=shift)
    return Layer("requant", op, [x.index], [y.index], 0, p)


def _lower_copy(graph: SubgraphInfo, op: OpInfo) -> Layer:
    x, y = _act_io(graph, op)  # raw bytes, as TFLite Micro's RESHAPE
    return Layer("copy", op, [x.index], [y.index], 0, dict(size=int(np.prod(x.shape))))


_LOWER = {"CONV_2D": _lower_conv, "DEPTHWISE_CONV_2D": _lower_dwconv, "FULLY_CONNECTED": _lower_fc,
          "ADD": _lower_add, "MEAN": _lower_mean, "AVERAGE_POOL_2D": _lower_avgpool, "PAD": _lower_pad,
          "PADV2": _lower_pad, "LOGISTIC": _lower_logistic, "QUANTIZE": _lower_quantize,
          "RESHAPE": _lower_copy, "SQUEEZE": _lower_copy, "SOFTMAX": _lower_softmax}


def run_layers(graph: SubgraphInfo, layers: list[Layer], inputs: list[np.ndarray]) -> list[np.ndarray]:
    """Execute `layers` with the NumPy integer reference; returns the graph outputs."""
    vals: dict[int, np.ndarray] = {}
    for idx, arr in zip(graph.inputs, inputs):
        vals[idx] = np.asarray(arr, np.int8).reshape(graph.tensors[idx].shape)
    for layer in layers:
        out = _EVAL[layer.kind](layer, [vals[i] for i in layer.inputs])
        vals[layer.outputs[0]] = out.reshape(graph.tensors[layer.outputs[0]].shape)
    return [vals[i] for i in graph.outputs]


def _eval_conv(l: Layer, xs):
    p = l.p
    return ref.conv2d(xs[0], p["weights"], p["bias"], p["rq"], p["stride"], p["dilation"], p["pad"],
                      p["out_shape"][:2], p["in_zp"])


def _eval_dwconv(l: Layer, xs):
    p = l.p
    return ref.depthwise_conv2d(xs[0], p["weights"], p["bias"], p["rq"], p["stride"], p["dilation"], p["pad"],
                                p["out_shape"][:2], p["in_zp"], p["depth_multiplier"])


def _eval_mean(l: Layer, xs):
    p = l.p
    return ref.mean(xs[0], (1, 2), p["in_zp"], p["out_zp"], p["mult"], p["shift"])


_EVAL = {
    "conv": _eval_conv,
    "dwconv": _eval_dwconv,
    "fc": lambda l, xs: ref.fully_connected(xs[0].reshape(1, -1), l.p["weights"], l.p["bias"], l.p["rq"],
                                            l.p["in_zp"]),
    "add": lambda l, xs: ref.add(xs[0], xs[1], l.p["add"]),
    "mean": _eval_mean,
    "avgpool": lambda l, xs: ref.average_pool2d(xs[0], l.p["k"], l.p["stride"], l.p["pad"],
                                                l.p["out_shape"][:2], l.p["act_min"], l.p["act_max"]),
    "pad": lambda l, xs: ref.pad(xs[0], l.p["paddings"], l.p["value"]),
    "logistic": lambda l, xs: ref.logistic(xs[0], l.p["lut"]),
    "softmax": lambda l, xs: ref.softmax(xs[0], l.p["softmax"]),
    "requant": lambda l, xs: ref.requantize(xs[0], l.p["in_zp"], l.p["out_zp"], l.p["mult"], l.p["shift"]),
    "copy": lambda l, xs: xs[0].copy(),
}
