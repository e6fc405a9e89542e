"""The integer reference: THE definition of int8 semantics in tinyexit.

Every int8 operation the generated C and the firmware kernels perform has a
NumPy twin here that rounds and shifts exactly as TensorFlow Lite Micro's
reference kernels do (double-rounding `MultiplyByQuantizedMultiplier`, the
gemmlowp fixed-point helpers, TFLite's `QuantizeMultiplier`).  The C kernels,
the generated code and the exported models are all tested against it, bit for
bit.  Two halves:

* prepare_*: host-side "prepare" steps (float scales -> integer multipliers,
  shifts, offsets, activation clamps), computed in float64/float32 exactly as
  TFLite Micro's Prepare does, so the device only computes;
* the ops: integer-only evaluation on int8 NHWC arrays.

Integers are carried in int64 arrays; every intermediate a C kernel keeps in
int32 is wrapped to int32 where C would wrap.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tinyexit.errors import InternalError, UserError

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
ACTIVATIONS = ("NONE", "RELU", "RELU_N1_TO_1", "RELU6")


# ---------------------------------------------------------------- fixed point
def wrap32(x):
    """Two's-complement int32 wrap of an int64 array (what C arithmetic does)."""
    x = np.asarray(x, dtype=np.int64)
    return ((x + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def srdhm(a, b):
    """gemmlowp SaturatingRoundingDoublingHighMul on int32 values.

    gemmlowp adds a sign-dependent nudge and divides truncating toward zero;
    for every int64 product that equals floor((a*b + 2^30) / 2^31), which is
    what this computes.  The only saturating case is INT32_MIN * INT32_MIN.
    """
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    res = (a * b + (1 << 30)) >> 31
    return np.where((a == b) & (a == INT32_MIN), INT32_MAX, res)


def rounding_divide_by_pot(x, exponent):
    """gemmlowp RoundingDivideByPOT: x / 2^exponent rounded to nearest, ties away from zero."""
    x = np.asarray(x, dtype=np.int64)
    e = np.asarray(exponent, dtype=np.int64)
    if np.any((e < 0) | (e > 31)):
        raise InternalError(f"rounding_divide_by_pot: exponent {e} outside [0, 31]")
    mask = (np.int64(1) << e) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> e) + (remainder > threshold)


def multiply_by_quantized_multiplier(x, multiplier, shift):
    """TFLite's double-rounding MultiplyByQuantizedMultiplier (int32 x, per-element shift allowed)."""
    shift = np.asarray(shift, dtype=np.int64)
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    shifted = wrap32(np.asarray(x, dtype=np.int64) * (np.int64(1) << left))
    return rounding_divide_by_pot(srdhm(shifted, multiplier), right)


def quantize_multiplier(real: float) -> tuple[int, int]:
    """TFLite QuantizeMultiplier: real ~= q * 2^(shift - 31), q in [2^30, 2^31)."""
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)
    q_fixed = _round_half_away(q * (1 << 31))
    if q_fixed > (1 << 31):
        raise InternalError(f"quantize_multiplier({real}): mantissa overflow")
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return int(q_fixed), int(shift)


def quantize_multiplier_smaller_than_one(real: float) -> tuple[int, int]:
    q, shift = quantize_multiplier(real)
    if shift > 0:  # TFLite's ADD prepare guarantees it; anything else is a bug here
        raise InternalError(f"multiplier {real} must be < 1")
    return q, shift


def _round_half_away(v: float) -> int:
    """std::round / TfLiteRound."""
    return int(math.floor(abs(v) + 0.5)) * (1 if v >= 0 else -1)


def activation_range(activation: str, scale: float, zero_point: int) -> tuple[int, int]:
    """CalculateActivationRangeQuantized for int8 outputs (float32 division, as TFLite)."""
    if activation not in ACTIVATIONS:
        raise UserError(f"fused activation '{activation}' unsupported; use one of {', '.join(ACTIVATIONS)}")

    def q(f: float) -> int:
        return zero_point + _round_half_away(float(np.float32(f) / np.float32(scale)))

    lo, hi = -128, 127
    if activation == "RELU":
        lo = max(lo, q(0.0))
    elif activation == "RELU6":
        lo, hi = max(lo, q(0.0)), min(hi, q(6.0))
    elif activation == "RELU_N1_TO_1":
        lo, hi = max(lo, q(-1.0)), min(hi, q(1.0))
    return lo, hi


def per_channel_multipliers(in_scale: float, filter_scales, out_scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Conv / depthwise / per-channel FC: effective scale in float64 from float32 scales."""
    mults, shifts = [], []
    for fs in np.asarray(filter_scales, dtype=np.float32).ravel():
        eff = float(np.float32(in_scale)) * float(fs) / float(np.float32(out_scale))
        m, s = quantize_multiplier(eff)
        mults.append(m)
        shifts.append(s)
    return np.array(mults, dtype=np.int64), np.array(shifts, dtype=np.int64)


def per_tensor_fc_multiplier(in_scale: float, filter_scale: float, out_scale: float) -> tuple[int, int]:
    """Per-tensor FC: TFLite multiplies the two scales in float32 first."""
    product = float(np.float32(in_scale) * np.float32(filter_scale))
    return quantize_multiplier(product / float(np.float32(out_scale)))


# ---------------------------------------------------------------- prepared ops
@dataclass(frozen=True)
class Requant:
    """Per-output-channel requantization and the clamp after it."""
    mult: np.ndarray   # int32 values, one per output channel (or one)
    shift: np.ndarray  # TFLite convention: > 0 left, < 0 right
    out_zp: int
    act_min: int
    act_max: int

    def apply(self, acc: np.ndarray) -> np.ndarray:
        y = multiply_by_quantized_multiplier(acc, self.mult, self.shift) + self.out_zp
        return np.clip(y, self.act_min, self.act_max).astype(np.int8)


def make_requant(in_scale, filter_scales, out_scale, out_zp, activation, per_tensor_fc=False) -> Requant:
    if per_tensor_fc:
        m, s = per_tensor_fc_multiplier(in_scale, np.ravel(filter_scales)[0], out_scale)
        mult, shift = np.array([m]), np.array([s])
    else:
        mult, shift = per_channel_multipliers(in_scale, filter_scales, out_scale)
    lo, hi = activation_range(activation, out_scale, out_zp)
    return Requant(mult, shift, int(out_zp), lo, hi)


def conv_output_size(size: int, k: int, stride: int, dilation: int, padding: str) -> tuple[int, int]:
    """(output size, padding before) as TFLite's ComputePaddingHeightWidth."""
    eff = (k - 1) * dilation + 1
    if padding == "SAME":
        out = (size + stride - 1) // stride
    elif padding == "VALID":
        out = (size + stride - eff) // stride
    else:
        raise UserError(f"padding '{padding}' unsupported; use SAME or VALID")
    total = max((out - 1) * stride + eff - size, 0)
    return out, total // 2


def _windows(x, in_zp, k_h, k_w, stride, dilation, pad, out_hw):
    """(N, OH, OW, KH, KW, C) view of x padded with its zero point (real 0)."""
    n, h, w, c = x.shape
    (oh, ow), (pt, pl) = out_hw, pad
    sh, sw = stride
    dh, dw = dilation
    need_h = (oh - 1) * sh + (k_h - 1) * dh + 1
    need_w = (ow - 1) * sw + (k_w - 1) * dw + 1
    xp = np.full((n, max(need_h, pt + h), max(need_w, pl + w), c), in_zp, dtype=np.int64)
    xp[:, pt:pt + h, pl:pl + w, :] = x
    rows = (np.arange(oh) * sh)[:, None] + np.arange(k_h)[None, :] * dh  # OH x KH
    cols = (np.arange(ow) * sw)[:, None] + np.arange(k_w)[None, :] * dw  # OW x KW
    return xp[:, rows[:, None, :, None], cols[None, :, None, :], :]


def conv2d(x, w, bias, rq: Requant, stride=(1, 1), dilation=(1, 1), pad=(0, 0), out_hw=None, in_zp=0):
    """CONV_2D, per-channel: x NHWC int8, w OHWI int8, bias int32 or None.

    Padded taps hold the input zero point, i.e. contribute nothing, exactly as
    TFLite's reference kernel skips them.
    """
    o, k_h, k_w, c = w.shape
    win = _windows(x, in_zp, k_h, k_w, stride, dilation, pad, out_hw)
    acc = np.einsum("nyxhwc,ohwc->nyxo", win - in_zp, np.asarray(w, np.int64))
    if bias is not None:
        acc = acc + np.asarray(bias, np.int64)
    return rq.apply(wrap32(acc))


def depthwise_conv2d(x, w, bias, rq: Requant, stride=(1, 1), dilation=(1, 1), pad=(0, 0), out_hw=None,
                     in_zp=0, depth_multiplier=1):
    """DEPTHWISE_CONV_2D: w is 1 x KH x KW x (C*M); output channel c*M + m reads input channel c."""
    _, k_h, k_w, oc = w.shape
    win = _windows(x, in_zp, k_h, k_w, stride, dilation, pad, out_hw) - in_zp
    win = np.repeat(win, depth_multiplier, axis=-1)
    acc = np.einsum("nyxhwc,hwc->nyxc", win, np.asarray(w[0], np.int64))
    if bias is not None:
        acc = acc + np.asarray(bias, np.int64)
    return rq.apply(wrap32(acc))


def fully_connected(x, w, bias, rq: Requant, in_zp=0):
    """FULLY_CONNECTED: x (N, K) int8, w (O, K) int8."""
    acc = (np.asarray(x, np.int64) - in_zp) @ np.asarray(w, np.int64).T
    if bias is not None:
        acc = acc + np.asarray(bias, np.int64)
    return rq.apply(wrap32(acc))


@dataclass(frozen=True)
class AddParams:
    in1_offset: int
    in2_offset: int
    in1_mult: int
    in1_shift: int
    in2_mult: int
    in2_shift: int
    out_mult: int
    out_shift: int
    out_zp: int
    act_min: int
    act_max: int
    left_shift: int = 20


def prepare_add(s1, z1, s2, z2, s_out, z_out, activation) -> AddParams:
    s1, s2, s_out = (float(np.float32(s)) for s in (s1, s2, s_out))
    twice_max = 2.0 * max(s1, s2)
    m1, sh1 = quantize_multiplier_smaller_than_one(s1 / twice_max)
    m2, sh2 = quantize_multiplier_smaller_than_one(s2 / twice_max)
    mo, sho = quantize_multiplier_smaller_than_one(twice_max / ((1 << 20) * s_out))
    lo, hi = activation_range(activation, s_out, z_out)
    return AddParams(-int(z1), -int(z2), m1, sh1, m2, sh2, mo, sho, int(z_out), lo, hi)


def _add_scaled(v, off, m, sh, left_shift):
    shifted = wrap32((np.asarray(v, np.int64) + off) * (1 << left_shift))
    return rounding_divide_by_pot(srdhm(shifted, m), -sh)


def add_input_table(p: AddParams, which: int) -> np.ndarray:
    """The rescaled value of every int8 input (index x + 128) of ADD input 1 or 2."""
    off, m, sh = (p.in1_offset, p.in1_mult, p.in1_shift) if which == 1 else (p.in2_offset, p.in2_mult, p.in2_shift)
    return _add_scaled(np.arange(-128, 128), off, m, sh, p.left_shift)


def add(a, b, p: AddParams):
    """ADD with rescaling (shapes equal or broadcastable)."""
    raw = wrap32(_add_scaled(a, p.in1_offset, p.in1_mult, p.in1_shift, p.left_shift)
                 + _add_scaled(b, p.in2_offset, p.in2_mult, p.in2_shift, p.left_shift))
    out = rounding_divide_by_pot(srdhm(raw, p.out_mult), -p.out_shift) + p.out_zp
    return np.clip(out, p.act_min, p.act_max).astype(np.int8)


def mean_multiplier(in_scale, out_scale, count: int) -> tuple[int, int]:
    """MEAN: in/out rescale with the 1/count folded in, as TFLite Micro's QuantizedMeanOrSum."""
    m, s = quantize_multiplier(float(np.float32(in_scale)) / float(np.float32(out_scale)))
    if count <= 0:
        raise InternalError("mean over an empty axis")
    k = min(count.bit_length() - 1, 32, 31 + s)
    return int((m << k) // count), s - k


def mean(x, axes, in_zp, out_zp, mult, shift, keep_dims=False):
    """MEAN over `axes` with the multiplier from mean_multiplier."""
    x = np.asarray(x, np.int64)
    count = int(np.prod([x.shape[a] for a in axes]))
    acc = wrap32(x.sum(axis=tuple(axes), keepdims=keep_dims) - in_zp * count)
    y = multiply_by_quantized_multiplier(acc, mult, shift) + out_zp
    return np.clip(y, -128, 127).astype(np.int8)


def average_pool2d(x, k_hw, stride, pad, out_hw, act_min=-128, act_max=127):
    """AVERAGE_POOL_2D (same quantization in and out): taps outside the image are not counted."""
    n, h, w, c = x.shape
    out = np.empty((n, *out_hw, c), dtype=np.int8)
    for oy in range(out_hw[0]):
        for ox in range(out_hw[1]):
            y0, x0 = oy * stride[0] - pad[0], ox * stride[1] - pad[1]
            ys = slice(max(y0, 0), min(y0 + k_hw[0], h))
            xs = slice(max(x0, 0), min(x0 + k_hw[1], w))
            win = np.asarray(x[:, ys, xs, :], np.int64)
            cnt = win.shape[1] * win.shape[2]
            acc = win.sum(axis=(1, 2))
            q = np.where(acc > 0, (acc + cnt // 2) // cnt, -((-acc + cnt // 2) // cnt))
            out[:, oy, ox, :] = np.clip(q, act_min, act_max)
    return out


def pad(x, paddings, value: int):  # PAD with the output zero point, or PADV2's constant
    return np.pad(np.asarray(x, np.int8), np.asarray(paddings), constant_values=int(value))


def requantize(x, in_zp, out_zp, mult, shift):
    """QUANTIZE int8 -> int8."""
    y = multiply_by_quantized_multiplier(np.asarray(x, np.int64) - in_zp, mult, shift) + out_zp
    return np.clip(y, -128, 127).astype(np.int8)


# ---------------------------------------------------------------- logistic
# TFLite Micro evaluates int8 LOGISTIC with gemmlowp's fixed-point logistic on
# a Q4.27 input.  An int8 input has only 256 values, so the host evaluates that
# exact integer algorithm once per value and the device looks the result up.
def _sat_shl(x: int, e: int) -> int:
    """SaturatingRoundingMultiplyByPOT<e> for e > 0."""
    t = (1 << (31 - e)) - 1
    return INT32_MAX if x > t else INT32_MIN if x < -t else x << e


def _mul(a: int, b: int) -> int:  # FixedPoint * FixedPoint
    return int(srdhm(a, b))


def _rdiv(x: int, e: int) -> int:
    return int(rounding_divide_by_pot(x, e))


def _w(x: int) -> int:  # int32 wrap, as gemmlowp's raw adds
    return int(wrap32(x))


def _exp_on_interval(a: int) -> int:
    """exp(a) for a in [-1/4, 0), Q0.31 in and out."""
    const_term, third = 1895147668, 715827883
    x = _w(a + (1 << 28))
    x2 = _mul(x, x)
    x3 = _mul(x2, x)
    x4 = _mul(x2, x2)
    poly = _rdiv(_w(_mul(_w(_rdiv(x4, 2) + x3), third) + x2), 1)
    return _w(const_term + _mul(const_term, _w(x + poly)))


def _exp_on_negative_values_q4(a: int) -> int:
    """exp(a) for a <= 0 in Q4.27, result Q0.31."""
    frac_bits = 27
    quarter = 1 << (frac_bits - 2)
    a_mod = _w((a & (quarter - 1)) - quarter)
    result = _exp_on_interval(_sat_shl(a_mod, 4))
    remainder = _w(a_mod - a)
    for exponent, mult in ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308),
                           (2, 39332535), (3, 720401)):
        if remainder & (1 << (frac_bits + exponent)):
            result = _mul(result, mult)
    return INT32_MAX if a == 0 else result


def _one_over_one_plus_x(a: int) -> int:
    """1 / (1 + a) for a in (0, 1), Q0.31 in and out (Newton-Raphson in Q2.29)."""
    s = a + INT32_MAX  # RoundingHalfSum(a, One): (s + sign(s)) / 2, truncating
    half_den = (s + 1) // 2 if s >= 0 else -((1 - s) // 2)
    x = _w(1515870810 + _mul(half_den, -1010580540))
    for _ in range(3):
        one_minus = _w((1 << 29) - _mul(half_den, x))
        x = _w(x + _sat_shl(_mul(x, one_minus), 2))
    return _sat_shl(x, 1)


def gemmlowp_logistic_q4(a: int) -> int:
    """gemmlowp::logistic on FixedPoint<int32, 4>, result raw Q0.31."""
    if a == 0:
        return 1 << 30
    pos = _one_over_one_plus_x(_exp_on_negative_values_q4(_w(-abs(a))))
    return pos if a > 0 else _w(INT32_MAX - pos)


def logistic_lut(in_scale: float, in_zp: int) -> np.ndarray:
    """Output (zero point -128, scale 1/256) of int8 LOGISTIC for inputs -128..127."""
    real = float(np.float32(in_scale)) * float(1 << 27)
    q, left_shift = math.frexp(real)
    mult = _round_half_away(q * (1 << 31))
    radius = math.floor(15.0 * float(1 << 27) / float(2.0 ** left_shift))
    out = np.empty(256, dtype=np.int8)
    for i, v in enumerate(range(-128, 128)):
        d = v - in_zp
        if d <= -radius:
            out[i] = -128
        elif d >= radius:
            out[i] = 127
        else:
            q4 = int(multiply_by_quantized_multiplier(d, mult, left_shift))
            r = _rdiv(gemmlowp_logistic_q4(q4), 23) - 128
            out[i] = min(max(r, -128), 127)
    return out


def logistic(x, lut: np.ndarray):
    return np.asarray(lut, np.int8)[np.asarray(x, np.int64) + 128]  # the table from logistic_lut


# ---------------------------------------------------------------- softmax
# TFLite Micro evaluates int8 -> int8 SOFTMAX with the reference kernel: the
# input difference to the row maximum is rescaled to Q5.26 (beta and the input
# scale folded into one multiplier), exp() is gemmlowp's fixed-point
# exp_on_negative_values, the sum is kept in Q12.19 and inverted with
# one_over_one_plus_x.  The difference has only 256 possible values, so the host
# evaluates exp() once per value (SoftmaxParams.exp_lut) and the device sums,
# inverts and scales; the result is the same integer algorithm, bit for bit.
SOFTMAX_DIFF_BITS = 5        # kScaledDiffIntegerBits
SOFTMAX_ACCUM_BITS = 12      # kAccumulationIntegerBits
SOFTMAX_MAX_DEPTH = 512      # beyond this the final shift may exceed 31 (TFLite's own limit is looser)


def _exp_on_negative_values(a: int, integer_bits: int) -> int:
    """gemmlowp exp_on_negative_values on FixedPoint<int32, integer_bits>, result raw Q0.31."""
    frac_bits = 31 - integer_bits
    quarter = 1 << (frac_bits - 2)
    a_mod = _w((a & (quarter - 1)) - quarter)
    result = _exp_on_interval(_sat_shl(a_mod, integer_bits))
    remainder = _w(a_mod - a)
    for exponent, mult in ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308),
                           (2, 39332535), (3, 720401), (4, 242)):
        if integer_bits > exponent and remainder & (1 << (frac_bits + exponent)):
            result = _mul(result, mult)
    return INT32_MAX if a == 0 else result


@dataclass(frozen=True)
class SoftmaxParams:
    mult: int                 # input_multiplier (> 1 real multiplier, left shift applied first)
    left_shift: int
    diff_min: int             # differences below it contribute nothing and give -128
    exp_lut: np.ndarray       # int32[256]: exp(diff) in Q0.31 for diff = 0, -1, ..., -255 (0 below diff_min)


def prepare_softmax(in_scale: float, beta: float) -> SoftmaxParams:
    """TFLite's CalculateSoftmaxParams for an int8 input (PreprocessSoftmaxScaling, CalculateInputRadius)."""
    real = min(float(beta) * float(np.float32(in_scale)) * float(1 << (31 - SOFTMAX_DIFF_BITS)),
               float((1 << 31) - 1))
    mult, left_shift = quantize_multiplier(real)
    if left_shift < 0:
        raise InternalError(f"softmax multiplier {real} < 1")
    radius = math.floor(((1 << SOFTMAX_DIFF_BITS) - 1) * float(1 << (31 - SOFTMAX_DIFF_BITS))
                        / float(1 << left_shift))
    lut = np.zeros(256, np.int64)
    for d in range(256):
        diff = -d
        if diff >= -radius:
            scaled = _w(int(srdhm(_w(diff * (1 << left_shift)), mult)))
            lut[d] = _exp_on_negative_values(scaled, SOFTMAX_DIFF_BITS)
    return SoftmaxParams(mult, left_shift, -radius, lut.astype(np.int32))


def softmax_reciprocal(total: int) -> tuple[int, int]:
    """gemmlowp GetReciprocal of a Q12.19 sum: (Q0.31 scale, num_bits_over_unit)."""
    headroom_plus_one = 32 - int(total).bit_length()  # CountLeadingZeros of a positive int32
    bits_over_unit = SOFTMAX_ACCUM_BITS - headroom_plus_one
    shifted_minus_one = _w(((total << headroom_plus_one) & 0xFFFFFFFF) - (1 << 31))
    return _one_over_one_plus_x(shifted_minus_one), bits_over_unit


def softmax(x, p: SoftmaxParams):
    """int8 SOFTMAX over the last axis; output zero point -128, scale 1/256."""
    x = np.asarray(x, np.int8)
    rows = x.reshape(-1, x.shape[-1]).astype(np.int64)
    out = np.empty(rows.shape, np.int8)
    lut = p.exp_lut.astype(np.int64)
    for r, row in enumerate(rows):
        e = lut[row.max() - row]
        total = int(wrap32(rounding_divide_by_pot(e, SOFTMAX_ACCUM_BITS).sum()))
        scale, bits = softmax_reciprocal(total)
        y = rounding_divide_by_pot(srdhm(scale, e), bits + 31 - 8) - 128
        out[r] = np.clip(y, -128, 127)
    return out.reshape(x.shape)
