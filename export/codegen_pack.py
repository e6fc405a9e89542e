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
of 4, no dilation: the stems) gathers each window's K taps with whole
unaligned words from a zero-point-padded int8 copy of the input (about
Hp * Wp * C + Kp + 8 more bytes of scratch), never testing bounds; the
taps stay contiguous, so a 3x3x3 window is 7 groups, not 3 rows of 3.

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


def constant_channels(layer: Layer) -> tuple[np.ndarray, np.ndarray]:
    """(mask, outputs): channels whose weights are all zero and the int8 output each then always has.

    Trained files prune channels this way (MobileNet's VWW file: zero weights, bias +-2^30, any
    multiplier); their output is requant(bias), known here, so the packed kernel gets constants that
    reproduce it (`_constant_requant`) instead of leaving the whole layer on the general path."""
    p = layer.p
    c_out = len(p["bias_folded"])
    dead = ~np.asarray(p["weights"]).reshape(c_out, -1).any(axis=1)
    outs = np.asarray(p["rq"].apply(np.asarray(p["bias_folded"], np.int64)), np.int64)
    return dead, outs


def why_not_packed(layer: Layer) -> str | None:
    """None when the packed kernel is exact for `layer`, else the reason it stays in the plain layout."""
    if layer.kind == "dwconv":
        return why_not_packed_dw(layer)
    if layer.kind not in ("conv", "fc"):
        return f"{layer.kind} layers have no packed layout"
    p = layer.p
    rq = p["rq"]
    if layer.kind == "conv" and p["out_shape"][2] % 2:
        return f"{p['out_shape'][2]} output channels (the packed kernel takes channel pairs)"
    live = ~constant_channels(layer)[0]
    if np.any(rq.shift[live] > -1) or np.any(rq.mult[live] <= 0):
        return "a multiplier >= 0.5 or a left shift (general requantization)"
    bound = np.where(live, acc_bound(p["weights"], p["bias_folded"]), 0)
    if np.any(bound >= _LIMIT):
        return f"accumulators up to {int(bound.max())} (the fast requantization needs < 2^30)"
    y_max = (bound * rq.mult.astype(np.int64) >> 31) + 1
    if np.any(live & (np.abs(round_zp(np.minimum(rq.shift, -1), rq.out_zp)) + y_max + 1 >= (1 << 31))):
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
    """Taps per channel in the packed order (K rounded up to a multiple of 4, every mode)."""
    k_h, k_w = layer.p["k"]
    c_in = layer.p["in_shape"][2]
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
    if mode == 2:   # columns, the gathered window (Kp + 4), the padded copy (whole words + 4)
        hp = (p["out_shape"][0] - 1) * p["stride"][0] + k_h
        return 5 * kp + 4 + (hp * wp * c_in + 3) // 4 * 4 + 4
    return 4 * kp + (kp + 4 if c_in % 4 else 0)


def pack_conv(layer: Layer) -> PackedConv | None:
    """The packed arrays of a CONV_2D layer, or None (see `why_not_packed`)."""
    if layer.kind != "conv" or why_not_packed(layer) is not None:
        return None
    p = layer.p
    rq = p["rq"]
    c_out = p["out_shape"][2]
    k_h = p["k"][0]
    w = 2 * np.asarray(p["weights"], np.int64).reshape(c_out, k_h, -1)   # per kernel row: k_w * C taps
    k = w.shape[1] * w.shape[2]
    groups = packed_taps(layer) // 4
    wp = np.zeros((c_out, 4 * groups), np.int64)
    wp[:, :k] = w.reshape(c_out, -1)
    computed, const = computed_channels(layer)
    g = wp[computed].reshape(len(computed) // 2, 2, groups, 4)
    lo = (g[..., 0] & 0xFFFF) + g[..., 2] * 65536   # (w0, w2) as a low/high int16 pair
    hi = (g[..., 1] & 0xFFFF) + g[..., 3] * 65536   # (w1, w3)
    words = np.stack([lo[:, 0], hi[:, 0], lo[:, 1], hi[:, 1]], axis=-1).ravel()
    header = np.array([MAGIC, k, c_out, groups, column_mode(layer), scratch_bytes(layer), len(computed) // 2,
                       len(const)], np.int64)
    b2, per_ch = _requant_words(layer)
    per_ch = np.concatenate([per_ch, np.arange(c_out)[:, None]], axis=1)[computed].reshape(-1, 2, 4)
    bias = np.concatenate([b2[computed].reshape(-1, 2), per_ch[:, 0], per_ch[:, 1]], axis=1).ravel()
    outs = constant_channels(layer)[1]
    consts = const + (outs[const] & 0xFF) * 65536
    return PackedConv(np.concatenate([header, words]), np.concatenate([bias, consts]))


def computed_channels(layer: Layer) -> tuple[np.ndarray, np.ndarray]:
    """(computed, constant) output channel indices of a packed CONV_2D: every channel with a nonzero
    weight, in order, plus one constant channel when that count is odd (the kernel takes pairs)."""
    dead = constant_channels(layer)[0]
    live, const = np.flatnonzero(~dead), np.flatnonzero(dead)
    if live.size % 2:
        live, const = np.sort(np.append(live, const[0])), const[1:]
    return live, const


def _requant_words(layer: Layer) -> tuple[np.ndarray, np.ndarray]:
    """Per output channel 2*bias and [M, rz, r] for the SMMLAR requantization; a constant channel gets
    bias 0, M = 2^30, r = 1, rz = 2*out: SMMLAR(0, M, rz) = rz and rz >> 1 = out, already clamped."""
    p, rq = layer.p, layer.p["rq"]
    dead, outs = constant_channels(layer)
    b2 = np.where(dead, 0, 2 * np.asarray(p["bias_folded"], np.int64))
    mult = np.where(dead, 1 << 30, rq.mult.astype(np.int64))
    rz = np.where(dead, 2 * outs, round_zp(np.minimum(rq.shift, -1), rq.out_zp))
    r = np.where(dead, 1, -rq.shift.astype(np.int64))
    return b2, np.stack([mult, rz, r], axis=-1)


def fast_requant(acc, mult, shift, out_zp: int) -> np.ndarray:
    """The packed kernel's requantization (NumPy model, before the activation clamp)."""
    a2 = 2 * np.asarray(acc, np.int64)
    m = np.asarray(mult, np.int64)
    r = -np.asarray(shift, np.int64)
    t = round_zp(shift, out_zp) + ((a2 * m + (np.int64(1) << 31)) >> 32) - (a2 < 0)
    return np.clip(t >> r, -128, 127)


FC_MAGIC = 0x43465054       # "TPFC" in memory
FC_ROWS = 4                 # output rows per block of the packed FULLY_CONNECTED kernel


def pack_fc(layer: Layer) -> PackedConv | None:
    """FULLY_CONNECTED for te_fc.c's packed path, or None (see `why_not_packed`).

    The kernel widens the input once into SXTB16 order, (x0,x2),(x1,x3) per 4 taps, zero past K, and
    runs FC_ROWS rows at a time: per group of 4 taps one LDRD of input and two LDM of 4 weight words
    feed 8 SMLAD.  Weights (doubled, as for convolutions): header [FC_MAGIC, K, n_out, groups, FC_ROWS,
    0, 0, 0], then per block and group row 0 (2w0,2w2), (2w1,2w3), row 1, ..., row 3; rows past n_out
    are zero.  Bias array per block: [2b0..2b3, then M, rz, r of each row] (`_requant_words`)."""
    if layer.kind != "fc" or why_not_packed(layer) is not None:
        return None
    p = layer.p
    n_out, k = p["n_out"], p["k"]
    groups = (k + 3) // 4
    blocks = (n_out + FC_ROWS - 1) // FC_ROWS
    w = np.zeros((blocks * FC_ROWS, 4 * groups), np.int64)
    w[:n_out, :k] = 2 * np.asarray(p["weights"], np.int64).reshape(n_out, k)
    g = w.reshape(blocks, FC_ROWS, groups, 4).transpose(0, 2, 1, 3)           # block, group, row, tap
    lo = (g[..., 0] & 0xFFFF) + g[..., 2] * 65536
    hi = (g[..., 1] & 0xFFFF) + g[..., 3] * 65536
    words = np.stack([lo, hi], axis=-1).ravel()
    header = np.array([FC_MAGIC, k, n_out, groups, FC_ROWS, 0, 0, 0], np.int64)
    b2, per_row = _requant_words(layer)
    pad = blocks * FC_ROWS - n_out
    b2 = np.concatenate([b2, np.zeros(pad, np.int64)]).reshape(blocks, FC_ROWS)
    per_row = np.concatenate([per_row, np.tile([1 << 30, 0, 1], (pad, 1))]).reshape(blocks, 3 * FC_ROWS)
    return PackedConv(np.concatenate([header, words]), np.concatenate([b2, per_row], axis=1).ravel())


# ---- DEPTHWISE_CONV_2D (kernels/arm_dsp/te_dwconv.c, dw_ring) ----
# 3x3, multiplier 1, strides 1/2: per channel TE_DW_BLOCK int32 words [M, rz, r, 2*b, W01 and W12 of each
# kernel row] with W01 = (2w0, 2w1), W12 = (2w1, 2w2) as low/high int16 halves, after a header
# [DW_MAGIC, out_c, general requantization (sign correction and clamps), transposed].  Transposed (maps taller
# than wide): the kernel runs along image columns, so "kernel rows" are the columns of the 3x3 kernel.  The
# params struct then has mult = shift = bias = NULL and `w` at the words; size mode keeps the plain arrays and
# the kernel builds the same blocks per group of four channels.
DW_MAGIC = 0x32574454       # "TDW2" in memory
DW_HEADER_WORDS = 4
DW_BLOCK_WORDS = 10
DW_RING_W = 64              # te_kernels.h TE_DW_RING_W: line positions, (out - 1) * stride + 4 rounded to even


def _dw_columns(out: int, stride: int) -> int:
    return ((out - 1) * stride + 4 + 1) // 2 * 2


def dw_transposed(layer: Layer) -> bool:
    """te_dwconv.c dw_transposed: lines along image columns when the map is taller than wide and they fit."""
    p = layer.p
    (oh, ow, _), (sh, _) = p["out_shape"], p["stride"]
    return oh > ow and _dw_columns(oh, sh) <= DW_RING_W


def dw_ring_columns(layer: Layer) -> int:
    """Widened positions of one line (an image row, or a column when transposed)."""
    p = layer.p
    if dw_transposed(layer):
        return _dw_columns(p["out_shape"][0], p["stride"][0])
    return _dw_columns(p["out_shape"][1], p["stride"][1])


def why_not_packed_dw(layer: Layer) -> str | None:
    """None when te_dwconv.c's ring kernel takes `layer` with packed blocks, else why it keeps the plain layout."""
    p = layer.p
    if p["depth_multiplier"] != 1 or tuple(p["k"]) != (3, 3) or tuple(p["dilation"]) != (1, 1):
        return "depthwise other than 3x3, multiplier 1, no dilation (general path)"
    if any(s not in (1, 2) for s in p["stride"]):
        return f"stride {tuple(p['stride'])} (the ring kernel takes 1 and 2)"
    if dw_ring_columns(layer) > DW_RING_W:
        return f"{dw_ring_columns(layer)} ring columns (more than {DW_RING_W})"
    rq = p["rq"]
    if np.any(rq.shift > -1) or np.any(rq.shift < -30) or np.any(rq.mult <= 0):
        return "a multiplier >= 0.5, a left shift or a shift beyond 30 (general requantization)"
    w = np.asarray(p["weights"], np.int64).reshape(-1, p["out_shape"][2]).T
    bound = acc_bound(w, p["bias_folded"])
    if np.any(bound >= _LIMIT):
        return f"accumulators up to {int(bound.max())} (the fast requantization needs < 2^30)"
    if np.any(np.abs(round_zp(rq.shift, rq.out_zp)) >= _LIMIT):
        return "a rounding constant that leaves int32"
    return None


def dw_general(layer: Layer) -> bool:
    """The kernel's requantization needs the sign correction and the clamps (anything but ReLU at out_zp -128)."""
    rq = layer.p["rq"]
    return bool(rq.act_min < rq.out_zp or rq.act_min > -128 or rq.act_max < 127)


def pack_dwconv(layer: Layer) -> np.ndarray | None:
    """The packed int32 words of a DEPTHWISE_CONV_2D layer, or None (see `why_not_packed_dw`)."""
    if why_not_packed_dw(layer) is not None:
        return None
    p, rq = layer.p, layer.p["rq"]
    c = p["out_shape"][2]
    w = 2 * np.asarray(p["weights"], np.int64).reshape(3, 3, c).transpose(2, 0, 1)   # channel, ky, kx
    if dw_transposed(layer):
        w = w.transpose(0, 2, 1)

    def pair(lo, hi):
        return (lo & 0xFFFF) | (hi << 16)
    rows = np.stack([pair(w[:, :, 0], w[:, :, 1]), pair(w[:, :, 1], w[:, :, 2])], axis=-1).reshape(c, 6)
    rows = np.where(rows >= 1 << 31, rows - (1 << 32), rows)
    consts = np.stack([rq.mult.astype(np.int64), round_zp(rq.shift, rq.out_zp), -rq.shift.astype(np.int64),
                       2 * np.asarray(p["bias_folded"], np.int64)], axis=-1)
    header = np.array([DW_MAGIC, c, int(dw_general(layer)), int(dw_transposed(layer))], np.int64)
    return np.concatenate([header, np.concatenate([consts, rows], axis=1).ravel()])
