/* TFLite's integer rounding helpers (gemmlowp semantics), portable C99.
 * Defined by tinyexit/export/int8_ref.py: srdhm, rounding_divide_by_pot,
 * multiply_by_quantized_multiplier (double rounding). */
#ifndef TE_FIXEDPOINT_H
#define TE_FIXEDPOINT_H

#include <stdint.h>

/* SaturatingRoundingDoublingHighMul: floor((a*b + 2^30) / 2^31), which equals
 * gemmlowp's sign-dependent nudge with truncating division. */
static inline int32_t te_srdhm(int32_t a, int32_t b)
{
    if (a == b && a == INT32_MIN) return INT32_MAX;
    return (int32_t)(((int64_t)a * b + (1 << 30)) >> 31);
}

/* RoundingDivideByPOT: round to nearest, ties away from zero; 0 <= e <= 31. */
static inline int32_t te_rdbpot(int32_t x, int e)
{
    const int32_t mask = (int32_t)((1u << e) - 1u);
    const int32_t remainder = x & mask;
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> e) + (remainder > threshold ? 1 : 0);
}

/* MultiplyByQuantizedMultiplier; shift > 0 shifts left first. */
static inline int32_t te_mbqm(int32_t x, int32_t mult, int shift)
{
    const int left = shift > 0 ? shift : 0;
    const int right = shift > 0 ? 0 : -shift;
    return te_rdbpot(te_srdhm((int32_t)((uint32_t)x << left), mult), right);
}

static inline int8_t te_clamp8(int32_t v, int32_t lo, int32_t hi)
{
    return (int8_t)(v < lo ? lo : (v > hi ? hi : v));
}

/* gemmlowp one_over_one_plus_x_for_x_in_0_1: 1 / (1 + a) for a in [0, 1), Q0.31 in
 * and out, three Newton-Raphson steps in Q2.29 (int8_ref._one_over_one_plus_x). */
static inline int32_t te_sat_shl(int32_t x, int e)
{
    const int32_t t = (int32_t)((1u << (31 - e)) - 1u);
    return x > t ? INT32_MAX : (x < -t ? INT32_MIN : (int32_t)((uint32_t)x << e));
}

static inline int32_t te_one_over_one_plus_x(int32_t a)
{
    const int64_t s = (int64_t)a + INT32_MAX;           /* RoundingHalfSum(a, One) */
    const int32_t half_den = (int32_t)((s + (s >= 0 ? 1 : -1)) / 2);
    int32_t x = (int32_t)((uint32_t)1515870810u + (uint32_t)te_srdhm(half_den, -1010580540));
    for (int i = 0; i < 3; ++i) {
        const int32_t one_minus = (int32_t)((uint32_t)(1 << 29) - (uint32_t)te_srdhm(half_den, x));
        x = (int32_t)((uint32_t)x + (uint32_t)te_sat_shl(te_srdhm(x, one_minus), 2));
    }
    return te_sat_shl(x, 1);
}

#endif
