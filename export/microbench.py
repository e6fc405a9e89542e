"""Single-operator int8 models over a sweep of shapes, and the kernel features of any model's layers.

`default_sweep()` lists the sweep (`SweepPoint`s: one operator and its shape; seeded,
so the same on every run), `single_op_tflite(point)` converts one to a full-int8
TFLite file with TensorFlow, `write_sweep_c(points, out)` generates the C of each
(model `mb<i>`, export.codegen) into one folder for the microbenchmark firmware, and
`layer_features(layer)` / `bundle_layer_table(bundle_dir)` describe every layer the
firmware runs (kind, MACs, bytes, channels, output pixels, ...) so a kernel cost
model can price it.  A new operator kind is one entry in `_BUILDERS` (and, if its
cost needs one, a feature in `layer_features`).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from tinyexit.errors import UserError
from tinyexit.export.microbench_arm_dsp import avgpool_features, conv_packed_counts, dwconv_ring_features, fc_features


@dataclass(frozen=True)
class SweepPoint:
    kind: str              # conv, dwconv, fc, add, mean, avgpool, pad, softmax, ...
    h: int = 8             # input map (fc: 1 x 1 x cin; softmax: h rows of cout values)
    w: int = 8
    cin: int = 8
    cout: int = 8          # output channels (dwconv: cin x multiplier; fc: outputs; softmax: depth)
    k: int = 3             # kernel / pool size, or pad width
    stride: int = 1
    padding: str = "SAME"
    relu: bool = True
    keep_dims: bool = True  # mean: keep the reduced axes (a runtime may take a slower path without)
    depth: int = 1         # a chain: the operator, then depth - 1 more of its kind (stride 1, SAME, cout -> cout)
    policy: str = ""       # kind "decision": the exit policy tested on `cout` logits

    def __post_init__(self):
        if self.kind not in _BUILDERS and self.kind != DECISION:
            raise UserError(f"sweep kind '{self.kind}': no single-operator builder (kinds: {', '.join(SWEEP_KINDS)})")
        if self.kind == DECISION and self.policy not in DECISION_POLICIES:
            raise UserError(f"decision sweep point: policy '{self.policy}'; use one of {', '.join(DECISION_POLICIES)}")
        if not 1 <= self.depth <= 16:
            raise UserError(f"sweep point {self.kind}: depth {self.depth}; use 1..16")

    def to_dict(self) -> dict:
        d = asdict(self)
        for key, default in (("depth", 1), ("policy", ""), ("keep_dims", True)):  # the keys of older sweeps (and their caches) stay
            if d[key] == default:
                d.pop(key)
        return d

    @property
    def label(self) -> str:
        if self.kind == DECISION:
            return f"decision {self.policy} on {self.cout} logits"
        return (f"{self.kind} {self.h}x{self.w}x{self.cin}->{self.cout} k{self.k} s{self.stride} "
                f"{self.padding}{' relu' if self.relu else ''}{f' x{self.depth}' if self.depth > 1 else ''}")


def _tf():
    from tinyexit.export.quiet import import_tensorflow

    return import_tensorflow()  # without its banners (export/quiet.py)


def _conv(tf, p, rng):
    w = rng.normal(0, 0.3, (p.k, p.k, p.cin, p.cout)).astype(np.float32)
    b = rng.normal(0, 0.1, p.cout).astype(np.float32)
    return lambda x: _act(tf, tf.nn.conv2d(x, w, p.stride, p.padding) + b, p)


def _dwconv(tf, p, rng):
    mult = max(1, p.cout // p.cin)
    w = rng.normal(0, 0.3, (p.k, p.k, p.cin, mult)).astype(np.float32)
    return lambda x: _act(tf, tf.nn.depthwise_conv2d(x, w, [1, p.stride, p.stride, 1], p.padding), p)


def _fc(tf, p, rng):
    w = rng.normal(0, 0.3, (p.cin, p.cout)).astype(np.float32)
    b = rng.normal(0, 0.1, p.cout).astype(np.float32)
    return lambda x: _act(tf, tf.matmul(tf.reshape(x, [1, p.cin]), w) + b, p)


def _act(tf, y, p):
    return tf.nn.relu(y) if p.relu else y


_BUILDERS = {
    "conv": _conv,
    "dwconv": _dwconv,
    "fc": _fc,
    "add": lambda tf, p, rng: (lambda x: x + x),
    "mean": lambda tf, p, rng: (lambda x: tf.reduce_mean(x, axis=[1, 2], keepdims=p.keep_dims)),
    "avgpool": lambda tf, p, rng: (lambda x: tf.nn.avg_pool2d(x, p.k, p.stride, p.padding)),
    "pad": lambda tf, p, rng: (lambda x: tf.pad(x, [[0, 0], [p.k, p.k], [p.k, p.k], [0, 0]])),
    "softmax": lambda tf, p, rng: (lambda x: tf.nn.softmax(x)),
    "logistic": lambda tf, p, rng: (lambda x: tf.sigmoid(x)),
}


# The exit decision a device runs between segments (firmware: te_policy_passes; agent: protocol.decide.ExitDecider)
# is a kernel kind of its own: cost per logit and per call, one kind per policy (calibrated costs as max_softmax).
DECISION = "decision"
DECISION_POLICIES = ("max_softmax", "entropy", "patience")
DECISION_LOGITS = (2, 4, 10, 16, 32, 64, 100, 256)
SWEEP_KINDS = (*_BUILDERS, DECISION)


def _input_shape(p: SweepPoint) -> list[int]:
    if p.kind == "fc":
        return [1, p.cin]
    if p.kind == "softmax":
        return [1, p.h, 1, p.cout]
    return [1, p.h, p.w, p.cin]


def _chain(tf, p: SweepPoint, rng):
    """The operator of `p`, then depth - 1 more of its kind on its output (a model of many layers: the per-layer
    dispatch cost of a runtime is measured, not guessed from one-layer models)."""
    first = _BUILDERS[p.kind](tf, p, rng)
    if p.depth == 1:
        return first
    more_p = replace(p, cin=p.cout if p.kind in ("conv", "fc") else p.cin, stride=1, padding="SAME", depth=1)
    if p.kind == "dwconv":
        more_p = replace(more_p, cin=max(1, p.cout // p.cin) * p.cin, cout=max(1, p.cout // p.cin) * p.cin)
        more_p = replace(more_p, cout=more_p.cin)
    more = [_BUILDERS[p.kind](tf, more_p, rng) for _ in range(p.depth - 1)]

    def op(x):
        y = first(x)
        for f in more:
            y = f(y)
        return y
    return op


def _agent_tail(tf, p: SweepPoint, op, shape: list[int], max_out_bytes: int, rng):
    """A result larger than one frame ends in a spatial MEAN; an operator without MACs ends in a one-output
    FULLY_CONNECTED (a bundle's manifest needs MACs to state exit ratios).  Both are layers of their own in
    `model_layers`, priced jointly with the operator."""
    out_shape = [int(d) for d in op(tf.zeros(shape)).shape]
    if int(np.prod(out_shape)) > max_out_bytes and len(out_shape) == 4 and p.kind not in ("fc", "softmax"):
        inner = op
        op = lambda x: tf.reduce_mean(inner(x), axis=[1, 2], keepdims=True)  # noqa: E731
        out_shape = [1, 1, 1, out_shape[-1]]
    if p.kind in ("conv", "dwconv", "fc"):
        return op
    n = int(np.prod(out_shape))
    w = rng.normal(0, 0.3, (n, 1)).astype(np.float32)
    body = op
    return lambda x: tf.matmul(tf.reshape(body(x), [1, n]), w)


def single_op_tflite(p: SweepPoint, seed: int = 0, max_out_bytes: int | None = None) -> bytes:
    """One full-int8 TFLite file holding the single operator of `p` (weights and calibration seeded).

    max_out_bytes: set for the host agent, which returns the whole output in one protocol frame of at most
    1024 bytes and serves only bundles with MACs (`_agent_tail`)."""
    if p.kind == DECISION:
        raise UserError(f"sweep point {p.label}: the exit decision is not a TFLite operator (decision_c, "
                        "decision_tflite)")
    tf = _tf()
    rng = np.random.default_rng(seed)
    op = _chain(tf, p, rng)
    shape = _input_shape(p)
    if max_out_bytes is not None:
        op = _agent_tail(tf, p, op, shape, max_out_bytes, rng)
    rep = [rng.normal(0, 1, shape).astype(np.float32) for _ in range(8)]
    return _convert(tf, lambda x: {"logits": op(x)}, shape, rep, p)


def _convert(tf, body, shape: list[int], rep: list, p: SweepPoint) -> bytes:
    """Full-int8 conversion of `body` (input `shape`, calibrated on `rep`)."""
    fn = tf.function(body, input_signature=[tf.TensorSpec(shape, tf.float32)])
    import warnings

    from tinyexit.export.tflite_convert import _native_output_silenced  # the converter's C++ chatter
    from tinyexit.export.tflite_convert import full_int8

    conv = full_int8(tf, tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], fn),
                     lambda: ([r] for r in rep))

    with warnings.catch_warnings(), _native_output_silenced():
        warnings.simplefilter("ignore")
        try:
            return bytes(conv.convert())
        except Exception as exc:  # the converter reports unsupported ops as generic errors
            raise UserError(f"sweep point {p.label}: TFLite conversion failed ({type(exc).__name__})") from None


def default_sweep(kinds: tuple[str, ...] | None = None, seed: int = 7, extra: bool = True) -> list[SweepPoint]:
    """The sweep: a seeded sample of each kind's shape grid, covering the ranges tinyexit's models use.
    extra: the shapes added for the line-based depthwise and lane-based average-pool kernels (`extra_sweep`)."""
    rng = np.random.default_rng(seed)
    kinds = tuple(kinds or SWEEP_KINDS)
    pts: list[SweepPoint] = []
    maps, chans = (4, 6, 8, 12, 16), (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)

    def pick(seq):
        return seq[int(rng.integers(len(seq)))]

    for _ in range(90):
        cout = pick(chans)
        pts.append(SweepPoint("conv", h=pick(maps), w=pick(maps), cin=pick(chans), cout=cout, k=pick((1, 3, 3, 5)),
                              stride=pick((1, 1, 2)), padding=pick(("SAME", "VALID")), relu=bool(rng.integers(2))))
    for _ in range(30):  # more than 16 output channels from whole words: the im2col column mode
        pts.append(SweepPoint("conv", h=pick(maps), w=pick(maps), cin=pick((4, 8, 12, 16, 24, 32)),
                              cout=pick((18, 24, 32, 48, 64)), k=pick((1, 1, 3)), stride=pick((1, 2)),
                              padding=pick(("SAME", "VALID")), relu=bool(rng.integers(2))))
    for _ in range(30):  # odd output channels: the plain (unpacked) convolution kernel
        pts.append(SweepPoint("conv", h=pick(maps), w=pick(maps), cin=pick(chans), cout=pick((1, 1, 3, 5)),
                              k=pick((1, 3, 3)), stride=pick((1, 1, 2)), padding=pick(("SAME", "VALID")),
                              relu=bool(rng.integers(2))))
    for _ in range(30):
        c = pick(chans)
        pts.append(SweepPoint("dwconv", h=pick(maps), w=pick(maps), cin=c, cout=c * pick((1, 1, 2)), k=pick((3, 3, 5)),
                              stride=pick((1, 2)), padding=pick(("SAME", "VALID")), relu=bool(rng.integers(2))))
    for _ in range(16):
        pts.append(SweepPoint("fc", h=1, w=1, cin=pick((8, 16, 24, 32, 64, 128)), cout=pick((1, 3, 4, 5, 10, 16, 32)),
                              relu=bool(rng.integers(2))))
    for kind in ("add", "mean", "pad"):
        for _ in range(8):
            pts.append(SweepPoint(kind, h=pick(maps), w=pick(maps), cin=pick(chans), k=pick((1, 2)), relu=False))
    for _ in range(8):
        pts.append(SweepPoint("avgpool", h=pick((4, 8, 12, 16)), w=pick((4, 8, 12, 16)), cin=pick(chans), k=2,
                              stride=2, padding="VALID", relu=False))
    for _ in range(8):
        pts.append(SweepPoint("softmax", h=pick((1, 2, 4, 8)), cout=pick((2, 4, 10, 16, 32)), relu=False))
    for kind in [k for k in kinds if k not in {p.kind for p in pts} and k != DECISION]:  # only a builder: a grid
        for _ in range(8):
            pts.append(SweepPoint(kind, h=pick(maps), w=pick(maps), cin=pick(chans), relu=False))
    pts = [replace(p, padding="SAME") if p.padding == "VALID" and p.k > min(p.h, p.w) else p for p in pts]
    if extra:
        pts += extra_sweep(seed)
    # last, and without the generator: the points above (and their cached conversions) stay as they were
    pts += [SweepPoint(DECISION, h=1, w=1, cin=n, cout=n, relu=False, policy=pol)
            for pol in DECISION_POLICIES for n in DECISION_LOGITS]
    return [p for p in pts if p.kind in kinds]


def extra_sweep(seed: int = 7) -> list[SweepPoint]:
    """More depthwise and average-pool shapes (their own generator, after the older points, so those and their
    cached conversions stay): te_dwconv.c's line kernel (3x3, multiplier 1) counts channel groups with tails,
    widened lines, 4/2/1-output passes and strips, so it needs channel counts of every remainder mod 4, line
    lengths of every remainder mod 4, tall maps (transposed) and wide ones; te_avgpool.c counts 8- and 4-channel
    lane passes over windows of any size (whole-width ones, padded ones, > 255 pixels per channel)."""
    rng = np.random.default_rng(seed + 1013)

    def pick(seq):
        return seq[int(rng.integers(len(seq)))]

    pts = []
    for _ in range(32):
        h, w = pick(((4, 4), (5, 7), (6, 6), (8, 8), (9, 11), (12, 12), (16, 16), (16, 4), (25, 5), (24, 12),
                     (7, 19), (10, 6), (13, 13), (32, 8)))
        pts.append(SweepPoint("dwconv", h=h, w=w, cin=(c := pick((1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 20, 24, 32))),
                              cout=c, k=3, stride=pick((1, 1, 2)), padding=pick(("SAME", "VALID")),
                              relu=bool(rng.integers(2))))
    for _ in range(6):  # 5x5: the four-channel word kernel
        c = pick((4, 8, 12, 16))
        pts.append(SweepPoint("dwconv", h=pick((6, 8, 12)), w=pick((6, 8, 12)), cin=c, cout=c, k=5,
                              stride=pick((1, 2)), padding="SAME", relu=bool(rng.integers(2))))
    for _ in range(16):
        k = pick((2, 3, 4, 5))
        pts.append(SweepPoint("avgpool", h=pick((4, 6, 8, 12, 16)), w=pick((4, 6, 8, 12, 16)),
                              cin=pick((1, 3, 4, 5, 8, 9, 12, 13, 16, 24, 32)), k=k, stride=pick((1, 2, k)),
                              padding=pick(("SAME", "VALID")), relu=False))
    for m, c in ((4, 12), (8, 20), (12, 16), (16, 8), (5, 64)):  # global pools: whole-width windows, 256 pixels
        pts.append(SweepPoint("avgpool", h=m, w=m, cin=c, k=m, stride=m, padding="VALID", relu=False))
    return [replace(p, padding="SAME") if p.padding == "VALID" and p.k > min(p.h, p.w) else p for p in pts]


def chain_sweep(kinds: tuple[str, ...] | None = None) -> list[SweepPoint]:
    """Models of 2 to 8 layers of one kind: with the one-layer points they separate a runtime's per-invoke
    overhead from each kind's per-layer cost (the host agent's sweep; the firmware's calls are counted exactly)."""
    shapes = {"conv": [SweepPoint("conv", h=8, w=8, cin=12, cout=12, k=3), SweepPoint("conv", h=4, w=4, cin=32,
                                                                                        cout=32, k=3),
                       SweepPoint("conv", h=8, w=8, cin=16, cout=16, k=1, relu=False)],
              "dwconv": [SweepPoint("dwconv", h=8, w=8, cin=16, cout=16, k=3)],
              "fc": [SweepPoint("fc", h=1, w=1, cin=32, cout=32)],
              "add": [SweepPoint("add", h=8, w=8, cin=12, relu=False)],
              "pad": [SweepPoint("pad", h=4, w=4, cin=8, k=1, relu=False)],
              "mean": [SweepPoint("mean", h=8, w=8, cin=16, relu=False)],
              "softmax": [SweepPoint("softmax", h=1, cout=10, relu=False)]}
    kinds = tuple(kinds or shapes)
    return [replace(p, depth=d) for kind, pts in shapes.items() if kind in kinds for p in pts for d in (2, 4, 8)]


def agent_sweep(kinds: tuple[str, ...] | None = None, seed: int = 7, per_kind: int = 8) -> list[SweepPoint]:
    """A runtime's sweep (host agent, a device behind a URL): every kind's points of the QEMU sweep subsampled
    evenly to `per_kind` (conv: 3 * per_kind; the exit test: per policy; first and last kept), then the deep end
    of a CNN (`wide_sweep`) and the chains of `chain_sweep`."""
    if not 1 <= per_kind <= 200:
        raise UserError(f"profile-device --per-kind {per_kind}: use 1..200")
    full = default_sweep(kinds, seed, extra=False)
    out = []
    for kind, policy in dict.fromkeys((p.kind, p.policy) for p in full):  # the exit test: per policy
        pts = [p for p in full if (p.kind, p.policy) == (kind, policy)]
        n = min(len(pts), per_kind * (3 if kind == "conv" else 1))
        out += [pts[int(i)] for i in np.linspace(0, len(pts) - 1, n).round().astype(int)]
    return out + wide_sweep(kinds) + chain_sweep(kinds)


def wide_sweep(kinds: tuple[str, ...] | None = None) -> list[SweepPoint]:
    """The deep end of a CNN: convolutions on small maps with wide channels (2x2 to 4x4 maps, 32 to 64 channels),
    where a runtime's cost follows the weights it re-packs per call rather than the MACs, and the head's
    global average pool without kept dimensions."""
    pts = [SweepPoint("conv", h=m, w=m, cin=cin, cout=cout, k=k, stride=st, padding="SAME" if k > 1 else "VALID",
                      relu=bool((m + cin + k) % 2))
           for m in (2, 4) for cin, cout in ((32, 64), (64, 64), (48, 32)) for k, st in ((1, 1), (3, 1), (3, 2))
           if not (m == 2 and st == 2)]
    # a global average pool that drops the reduced axes (a classifier head): LiteRT's generic, slower MEAN
    pts += [SweepPoint("mean", h=m, w=m, cin=c, relu=False, keep_dims=False)
            for m in (2, 4, 8) for c in (12, 32, 64)]
    return [p for p in pts if not kinds or p.kind in kinds]


def decision_features(policy: str, n_logits: int) -> dict:
    """The exit test after one segment, as a layer a cost model prices ("calibrated" costs as max_softmax)."""
    policy = "max_softmax" if policy == "calibrated" else policy
    return {"kind": f"decision_{policy}", "macs": 0, "logits": int(n_logits), "in_bytes": int(n_logits),
            "name": f"exit test {policy}"}


def decision_tflite(p: SweepPoint, seed: int = 0, features: int = 8) -> tuple[bytes, bytes]:
    """Two int8 TFLite segments whose only purpose is the exit test between them (a runtime's exit test is timed
    through the protocol, in an early-exit RUN, as a device runs it): segment 0 returns `p.cout` logits and
    LOGISTIC features, whose int8 quantization is fixed (scale 1/256, zero point -128); segment 1 is calibrated
    on [0, 255/256] so its input has exactly that quantization (import checks the boundary bit for bit)."""
    tf = _tf()
    rng = np.random.default_rng(seed)
    n = p.cout
    w0, wf, w1 = (rng.normal(0, 0.3, (features, m)).astype(np.float32) for m in (n, features, n))
    rep0 = [rng.normal(0, 1, (1, features)).astype(np.float32) for _ in range(8)]
    rep1 = [np.linspace(0.0, 255 / 256, features, dtype=np.float32).reshape(1, features)] + [
        np.clip(rng.uniform(0, 1, (1, features)), 0, 255 / 256).astype(np.float32) for _ in range(7)]
    seg0 = _convert(tf, lambda x: {"logits": tf.matmul(x, w0), "features": tf.sigmoid(tf.matmul(x, wf))},
                    [1, features], rep0, p)
    seg1 = _convert(tf, lambda x: {"logits": tf.matmul(x, w1)}, [1, features], rep1, p)
    return seg0, seg1


_POLICY_IDS = {"max_softmax": 0, "entropy": 1, "patience": 2}   # te_policy.h / exit_policy ids


def decision_c(p: SweepPoint, name: str, with_policy_source: bool) -> str:
    """A microbenchmark "model" whose one segment is the firmware's exit test on `p.cout` int8 logits (the input
    bytes microbench_main.c fills).  te_policy.c is not in the microbenchmark image's sources, so the first such
    file compiles it in (with_policy_source)."""
    n, pid = p.cout, _POLICY_IDS[p.policy]
    threshold = "2.0f" if p.policy == "patience" else "0.5f"
    src = "#include \"te_policy.c\"\n" if with_policy_source else ""
    return f"""/* Generated by tinyexit (export/microbench.py) - do not edit.
 * exit-decision microbenchmark: te_policy_passes({p.policy}) on {n} int8 logits */
#include "te_model.h"
#include "te_policy.h"
{src}
static const te_policy_t {name}_policy = {{{pid}u, 1u, {{{threshold}}}}};
static uint8_t {name}_top1[4];
volatile int {name}_sink;

static void {name}_run(int8_t *arena)
{{
    {name}_sink = te_policy_passes(&{name}_policy, 0, arena, {n}, 0.125f, 0, {name}_top1);
}}

static const te_segment_t {name}_segments[1] = {{{{.run = {name}_run, .in_offset = 0u, .in_bytes = {n}u,
    .logits_offset = 0u, .num_classes = {n}u, .logits_scale = 0.125f, .logits_zp = 0}}}};
const te_model_t {name}_model = {{.name = "{name}", .artifact_hash = "", .source_sha256 = "",
    .arena_bytes = {max(n, 8)}u, .num_segments = 1u, .segments = {name}_segments}};
"""


def layer_features(layer, packed: bool) -> dict:
    """What a kernel cost model may use about one lowered layer (export.codegen_lower.Layer): counts that the
    firmware's arm_dsp loops run over (firmware_bridge/firmware/kernels/arm_dsp)."""
    p, kind = layer.p, layer.kind
    f = {"kind": kind, "macs": layer.macs}
    if kind == "conv":
        f.update(_conv_features(layer, packed))
    elif kind == "dwconv":
        f.update(dwconv_ring_features(layer) if packed else _dwconv_features(p))  # dwconv_ring / dwconv_pc
    elif kind == "fc":
        f.update(fc_features(layer, packed))  # may set kind "fc_plain"
    elif kind == "mean":
        h, w, c = p["in_shape"]
        keep = len(layer.op.output_shapes[0]) == 4 if layer.op.output_shapes else True
        f.update(in_bytes=h * w * c, out_bytes=c, cin=c, cout=c, quad_iters=(c // 4) * h * w,
                 odd_iters=(c % 4) * h * w, quads=c // 4, odd_c=c % 4, keep_dims=int(keep),
                 dropped_dims_bytes=h * w * c * int(not keep))
    elif kind == "avgpool":
        f.update(avgpool_features(p))
    elif kind == "pad":
        (ih, iw, c), (oh, ow, oc) = p["in_shape"], p["out_shape"]
        f.update(in_bytes=ih * iw * c, out_bytes=oh * ow * oc, out_pixels=oh * ow, cin=c, cout=oc,
                 body_rows=ih, pad_rows=oh - ih, pad_bytes=oh * ow * oc - ih * iw * c)
    elif kind == "softmax":
        f.update(in_bytes=p["rows"] * p["depth"], out_bytes=p["rows"] * p["depth"], rows=p["rows"], cout=p["depth"])
    else:  # add, logistic, requant, copy: elementwise
        f.update(in_bytes=p["size"], out_bytes=p["size"])
    return {k: int(v) if not isinstance(v, str) else v for k, v in f.items()}


def _conv_features(layer, packed: bool) -> dict:
    """The packed kernel has three column modes (export.codegen_pack.column_mode): each is its own kernel kind."""
    from tinyexit.export.codegen_pack import column_mode, packed_taps

    p = layer.p
    (ih, iw, c), (oh, ow, oc) = p["in_shape"], p["out_shape"]
    kh, kw = p["k"]
    sh, sw = p["stride"]
    k = kh * kw * c
    n_pix = oh * ow
    rq = p["rq"]
    clamp = int(rq.act_min > -128 or rq.act_max < 127)
    inside = _inside_taps(ih, iw, oh, ow, kh, kw, p["stride"], p["pad"], p["dilation"])
    mode = column_mode(layer) if packed else -1
    kp = packed_taps(layer) if packed else (k + 3) // 4 * 4
    flat_1x1 = packed and kh == kw == 1 and c % 4 == 0 and p["pad"][0] == 0 and p["pad"][1] == 0
    pp = oh * ((ow + 1) // 2) if mode == 1 and not flat_1x1 else (n_pix + 1) // 2
    f = {"kind": f"conv_m{mode}" if packed else "conv_plain",
         "in_bytes": ih * iw * c, "out_bytes": n_pix * oc, "out_pixels": n_pix, "cin": c, "cout": oc, "kh": kh,
         "kw": kw, "stride": sh, "pix_pairs": pp, "chan_pairs": pp * (oc // 2), "inner": pp * (oc // 2) * (kp // 4),
         "odd_inner": pp * (oc % 2) * (kp // 4), "gather_taps": 2 * pp * kh * kw, "gather_bytes": 2 * pp * kp,
         "inside_taps": inside, "outside_bytes": (n_pix * kh * kw - inside) * c, "clamp": clamp * n_pix * oc,
         "rows": oh, "gather_rows": 2 * pp * kh}
    if packed:
        f.update(conv_packed_counts(layer, kp, pp))
        if flat_1x1:  # te_conv_packed_1x1 whatever the mode: each pixel pair's columns straight from the int8 input
            f.update(kind="conv_1x1", col_pairs=pp * (c // 8), col_odd=pp * (c // 4 % 2))
            return f
    if not packed:  # te_conv_s8: a byte gather unless C % 4 == 0; the general requantization unless it is safe
        fast = k < (1 << 29) // (128 * 127) and bool((rq.shift < 0).all()) and \
            bool((abs(np.asarray(p["bias_folded"])) < (1 << 29)).all())
        f.update(byte_gather=2 * pp * k * int(c % 4 != 0), fast_outs=2 * pp * oc * int(fast),
                 general_outs=2 * pp * oc * int(not fast))
    if mode == 1:
        wp = (ow - 1) * sw + kw
        f["widen_words"] = _ring_widens(oh, kh, sh, p["pad"][0]) * (wp * c // 4)
        f["gather_bytes"] = pp * kh * (kw * c // 4)  # interleaved words per pixel pair
        f["gather_rows"] = pp * kh
    elif mode == 2:
        wp, hp = (ow - 1) * sw + kw, (oh - 1) * sh + kh
        f["widen_words"] = hp * wp * c + min(ih, hp) * min(iw, wp) * c  # zero-point fill, then the copy
        f["gather_bytes"] = 2 * pp * kh * ((kw * c + 3) // 4)
        # each pixel's window widened from the stage: kp / 4 words in runs of 4, then the rest (te_widen_rows)
        f["gather_taps"], f["widen_rest"] = 2 * pp * (kp // 16), 2 * pp * (kp // 4 % 4)
    return f


def _inside_taps(ih, iw, oh, ow, kh, kw, stride, pad, dilation) -> int:
    """(output pixel, kernel tap) pairs that read inside the input (the rest read padding)."""
    def axis(n_in, n_out, k, s, p, d):
        return sum(1 for o in range(n_out) for t in range(k) if 0 <= o * s - p + t * d < n_in)

    return axis(ih, oh, kh, stride[0], pad[0], dilation[0]) * axis(iw, ow, kw, stride[1], pad[1], dilation[1])


def _ring_widens(oh: int, kh: int, sh: int, pt: int) -> int:
    """Input rows the row-ring mode widens (a row is widened once while it stays in the ring)."""
    have, n = [None] * kh, 0
    for oy in range(oh):
        for ky in range(kh):
            iy = oy * sh - pt + ky
            slot = (iy + pt) % kh
            if have[slot] != iy:
                have[slot], n = iy, n + 1
    return n


def _dwconv_features(p: dict) -> dict:
    """te_dwconv_s8: multiplier 1 with >= 4 channels runs four channels per word (3x3 interiors unrolled) and a
    per-channel tail; any other multiplier runs per channel (kind dwconv_pc)."""
    (ih, iw, c), (oh, ow, oc) = p["in_shape"], p["out_shape"]
    kh, kw = p["k"]
    (sh, sw), (pt, pl), (dh, dw) = p["stride"], p["pad"], p["dilation"]
    interior = sum(1 for oy in range(oh) for ox in range(ow)
                   if oy * sh - pt >= 0 and ox * sw - pl >= 0 and oy * sh - pt + (kh - 1) * dh < ih
                   and ox * sw - pl + (kw - 1) * dw < iw)
    n, pixels = kh * kw, oh * ow
    border = pixels - interior
    rq, bias = p["rq"], np.abs(np.asarray(p["bias_folded"], np.int64))
    fast = bool((rq.shift < 0).all()) and bool((bias <= (1 << 30) - 1 - n * 128 * 128).all())
    f = {"in_bytes": ih * iw * c, "out_bytes": pixels * oc, "out_pixels": pixels, "cin": c, "cout": oc,
         "general_outs": pixels * oc * int(not fast)}
    if p["depth_multiplier"] != 1 or c < 4:
        f.update(kind="dwconv_pc", interior_pairs=interior * oc * (n // 2), interior_odd=interior * oc * (n % 2),
                 border_taps=border * oc * n)
        return f
    quads, tail = c // 4, c % 4
    k3 = (kh, kw, dh, dw) == (3, 3, 1, 1)
    f.update(quad_interior=interior * quads * int(k3), quad_taps=(border + interior * int(not k3)) * quads * n,
             quad_border=border * quads, tail_pairs=interior * tail * (n // 2), tail_odd=interior * tail * (n % 2),
             tail_border_taps=border * tail * n, tail_outs=pixels * tail)
    return f


def model_layers(tflite_bytes: bytes, name: str, arm_dsp_layout: bool = True) -> list[dict]:
    """Features of every layer of a single-subgraph int8 file, as the C code generator lowers it."""
    from tinyexit.export.codegen_lower import lower, read_segment
    from tinyexit.export.codegen_pack import why_not_packed

    layers = lower(read_segment(tflite_bytes, name))
    rows = []
    for i, layer in enumerate(layers):
        row = layer_features(layer, arm_dsp_layout and why_not_packed(layer) is None)
        row["name"] = layer.label
        rows.append(row)
    return rows


def write_sweep_c(points: list[SweepPoint], blobs: list[bytes], out: Path, name: str | None = None) -> list[dict]:
    """C of each single-operator model (mb<i>_model.{c,h}, or `name` for one point) into out; per point its
    layers' features and arena."""
    from tinyexit.export.codegen import CodegenConfig, generate_c

    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (p, blob) in enumerate(zip(points, blobs)):
        model = name if name and len(points) == 1 else f"mb{i}"
        src = generate_c([blob], CodegenConfig(model_name=model))
        for fname, text in src.files.items():
            (out / fname).write_text(text)
        layers = model_layers(blob, model)
        rows.append({"name": model, "point": p.to_dict(), "label": p.label, "arena_bytes": src.arena_bytes,
                     "layers": layers})
    return rows


def bundle_layer_table(bundle_dir: Path, write: bool = True) -> dict:
    """Per-layer features of a bundle's segments and monolithic models -> c/layers.json (beside codegen.json)."""
    from tinyexit.bundle import load_bundle

    bundle = load_bundle(Path(bundle_dir))
    table = {"model": bundle.model, "artifact_hash": bundle.artifact_hash, "segments": []}
    for k, seg in enumerate(bundle.segments):
        rel = (seg.files.get("tflm") or {}).get("path")
        if not rel:
            raise UserError(f"{bundle.dir}/manifest.json: segment {k} lists no TFLite Micro file; re-run 'tinyexit export'")
        table["segments"].append(model_layers((bundle.dir / rel).read_bytes(), f"{bundle.model} segment {k}"))
    for key, suffix in (("full_tflite", "full"), ("all_exits_tflite", "all_exits")):
        entry = bundle.files.get(key)
        if entry:
            rel = entry.get("path") if isinstance(entry, dict) else entry
            table[suffix] = model_layers((bundle.dir / rel).read_bytes(), f"{bundle.model} {suffix}")
    if write:
        path = bundle.dir / "c" / "layers.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(table, indent=1))
    return table
