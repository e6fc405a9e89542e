"""The arm_dsp kernels' "prepare" on the host: CONV_2D weights packed for a pure-SMLAD inner loop.

The arm_dsp CONV_2D multiplies two output pixels by two output channels at a
time.  Its input columns hold, per group of 4 taps, the SXTB16 halves
(x0,x2) and (x1,x3) of each pixel as int16 pairs.  Here the weights get the
same shape once, at generation time, so the device never sign-extends a
weight: per channel pair and group, four int32 words

    [c0 (w0,w2), c0 (w1,w3), c1 (w0,w2), c1 (w1,w3)]     (low half, high half)

and the loop body is one LDM of columns, one LDM of weights and 8 SMLAD for
16 multiply-accumulates.  Each weight is stored doubled (2w fits int16), so
the accumulator is 2*acc, which is what the one-instruction requantization
below wants:

    t = SMMLAR(2*acc, M, rz) - (acc < 0)      rz = 2^(r-1) + out_zp * 2^r
    out = SSAT8(t >> r)                       then the activation clamp

SMMLAR(2a, M, rz) = rz + floor((a*M + 2^30) / 2^31) = rz + SRDHM(a, M), and
floor((y + 2^(r-1) - [y<0]) / 2^r) is TFLite's RoundingDivideByPOT(y, r);
[y<0] may be replaced by [a<0] because y = 0 whenever their signs differ,
where both give the same quotient.  Adding out_zp * 2^r before the shift
adds out_zp after it.  Exact while |acc| < 2^30 and no sum leaves int32:
`pack_conv` checks that per layer from the weights and biases (inputs are
any int8), and leaves a layer it cannot prove in the plain layout, which the
kernels' general path handles.

Columns come from one of two places (header word `mode`).  Mode 0 unrolls
each output pixel from the int8 input.  Mode 1 (channels a multiple of 4, no
dilation, few output channels, where unrolling costs most per MAC) first
widens each input row once into a ring of k_h zero-point-padded int16 rows
and then only interleaves two pixels' rows with LDM/STM; it needs
k_h * Wp * C * 2 more bytes of scratch (Wp: the padded row width), which
the memory plan reserves (`scratch_bytes`).  Mode 2 (channels not a multiple
of 4, no dilation: the stem) pads each kernel row's k_w*C taps to a multiple
of 4 with zero weights, so that the kernel reads every row of a window as
whole words from a zero-point-padded int8 copy of the input (Hp * Wp * C + 4
bytes of scratch) and never gathers bytes or tests bounds.

Arrays (int32 words):
    weights:  MAGIC, K (taps per channel), out_c, groups (packed taps / 4), mode,
              scratch bytes, 0, 0, then out_c/2 x groups x 4 words as above
              (padding taps are zero);
    bias:     per channel pair [2*b0, 2*b1, M0, rz0, r0, M1, rz1, r1] with b the
              folded bias (bias - in_zp * sum(w)).
In the generated C the params struct then points `w` at the weights, `bias`
at the second array and has `mult` = `shift` = NULL, which is how the kernel
tells the layouts apart (kernels/arm_dsp/te_conv_packed.h).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinyexit.export.codegen_lower import Layer

MAGIC = 0x324B5054          # "TPK2" in memory
HEADER_WORDS = 8
ROWBUF_MAX_OUT_C = 16       # mode 1 only where unrolling columns dominates (cost per MAC ~ 1 / out_c)
ROWBUF_MAX_K_H = 8          # the kernel's ring of rows
_LIMIT = 1 << 30


@dataclass
class PackedConv:
    weights: np.ndarray     # int32 words (header included)
    bias: np.ndarray        # int32 words, 8 per channel pair

    @property
    def nbytes(self) -> int:
        return 4 * (self.weights.size + self.bias.size)


def acc_bound(weights: np.ndarray, bias_folded: np.ndarray) -> np.ndarray:
    """Largest |bias + sum(w * x)| per output channel over every int8 input x."""
    w = np.abs(np.asarray(weights, np.int64).reshape(len(bias_folded), -1))
    return np.abs(np.asarray(bias_folded, np.int64)) + 128 * w.sum(axis=1)


def round_zp(shift: np.ndarray, out_zp: int) -> np.ndarray:
    r = -np.asarray(shift, np.int64)
    return (np.int64(1) << (r - 1)) + np.int64(out_zp) * (np.int64(1) << r)


def why_not_packed(layer: Layer) -> str | None:
    """None when the packed kernel is exact for `layer`, else the reason it stays in the plain layout."""
    if layer.kind != "conv":
        return f"{layer.kind} layers have no packed layout"
    p = layer.p
    rq, c_out = p["rq"], p["out_shape"][2]
    if c_out % 2:
        return f"{c_out} output channels (the packed kernel takes channel pairs)"
    if np.any(rq.shift > -1) or np.any(rq.mult <= 0):
        return "a multiplier >= 0.5 or a left shift (general requantization)"
    bound = acc_bound(p["weights"], p["bias_folded"])
    if np.any(bound >= _LIMIT):
        return f"accumulators up to {int(bound.max())} (the fast requantization needs < 2^30)"
    y_max = (bound * rq.mult.astype(np.int64) >> 31) + 1
    if np.any(np.abs(round_zp(rq.shift, rq.out_zp)) + y_max + 1 >= (1 << 31)):
        return "a rounding constant that leaves int32"
    return None


def column_mode(layer: Layer) -> int:
    """0: unroll every pixel from the int8 input; 1: from a ring of widened, padded rows; 2: from a padded
    int8 copy, kernel rows padded to whole words."""
    p = layer.p
    (_, _, c_in), c_out = p["in_shape"], p["out_shape"][2]
    if tuple(p["dilation"]) != (1, 1):
        return 0
    if c_in % 4:
        return 2
    return int(c_out <= ROWBUF_MAX_OUT_C and p["k"][0] <= ROWBUF_MAX_K_H)


def packed_taps(layer: Layer) -> int:
    """Taps per channel in the packed order (a multiple of 4)."""
    k_h, k_w = layer.p["k"]
    c_in = layer.p["in_shape"][2]
    if column_mode(layer) == 2:
        return k_h * ((k_w * c_in + 3) // 4 * 4)
    return (k_h * k_w * c_in + 3) // 4 * 4


def scratch_bytes(layer: Layer) -> int:
    """Scratch of a packed CONV_2D (mirrors te_conv_packed.h); the caller takes the max with the general path's."""
    p = layer.p
    k_h, k_w = p["k"]
    c_in = p["in_shape"][2]
    kp, mode = packed_taps(layer), column_mode(layer)
    wp = (p["out_shape"][1] - 1) * p["stride"][1] + k_w
    if mode == 1:
        return 4 * kp + 2 * k_h * wp * c_in
    if mode == 2:
        hp = (p["out_shape"][0] - 1) * p["stride"][0] + k_h
        return 4 * kp + hp * wp * c_in + 4
    return 4 * kp + (kp + 4 if c_in % 4 else 0)


def pack_conv(layer: Layer) -> PackedConv | None:
    """The packed arrays of a CONV_2D layer, or None (see `why_not_packed`)."""
    if why_not_packed(layer) is not None:
        return None
    p = layer.p
    rq = p["rq"]
    c_out = p["out_shape"][2]
    k_h = p["k"][0]
    w = 2 * np.asarray(p["weights"], np.int64).reshape(c_out, k_h, -1)   # per kernel row: k_w * C taps
    k = w.shape[1] * w.shape[2]
    groups = packed_taps(layer) // 4
    if column_mode(layer) == 2:   # each kernel row padded to whole words
        row = groups // k_h * 4
        wp = np.zeros((c_out, k_h, row), np.int64)
        wp[:, :, :w.shape[2]] = w
        wp = wp.reshape(c_out, -1)
    else:
        wp = np.zeros((c_out, 4 * groups), np.int64)
        wp[:, :k] = w.reshape(c_out, -1)
    g = wp.reshape(c_out // 2, 2, groups, 4)
    lo = (g[..., 0] & 0xFFFF) + g[..., 2] * 65536   # (w0, w2) as a low/high int16 pair
    hi = (g[..., 1] & 0xFFFF) + g[..., 3] * 65536   # (w1, w3)
    words = np.stack([lo[:, 0], hi[:, 0], lo[:, 1], hi[:, 1]], axis=-1).ravel()
    header = np.array([MAGIC, k, c_out, groups, column_mode(layer), scratch_bytes(layer), 0, 0], np.int64)
    b2 = 2 * np.asarray(p["bias_folded"], np.int64).reshape(-1, 2)
    per_ch = np.stack([rq.mult.astype(np.int64), round_zp(rq.shift, rq.out_zp), -rq.shift.astype(np.int64)],
                      axis=-1).reshape(-1, 2, 3)
    bias = np.concatenate([b2, per_ch[:, 0], per_ch[:, 1]], axis=1).ravel()
    return PackedConv(np.concatenate([header, words]), bias)


def fast_requant(acc, mult, shift, out_zp: int) -> np.ndarray:
    """The packed kernel's requantization (NumPy model, before the activation clamp)."""
    a2 = 2 * np.asarray(acc, np.int64)
    m = np.asarray(mult, np.int64)
    r = -np.asarray(shift, np.int64)
    t = round_zp(shift, out_zp) + ((a2 * m + (np.int64(1) << 31)) >> 32) - (a2 < 0)
    return np.clip(t >> r, -128, 127)
