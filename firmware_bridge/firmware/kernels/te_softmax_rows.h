/* SOFTMAX int8 -> int8 over the last axis, shared by both kernel sets, which
 * differ only in how they count leading zeros (`clz32`, of a non-zero sum).
 * TFLite Micro's integer algorithm: exp of the difference to the row maximum
 * (a host table, Q0.31), sum in Q12.19, reciprocal by Newton-Raphson, output
 * = exp * reciprocal rescaled to 1/256 steps, minus 128.  int8_ref.softmax. */
#ifndef TE_SOFTMAX_ROWS_H
#define TE_SOFTMAX_ROWS_H

#include "te_fixedpoint.h"
#include "te_kernels.h"

static inline void te_softmax_rows(const te_softmax_params_t *p, const int8_t *in, int8_t *out,
                                   int (*clz32)(uint32_t))
{
    const int32_t *lut = p->exp_lut;
    for (uint32_t r = 0; r < p->rows; ++r, in += p->depth, out += p->depth) {
        int32_t max = -128;
        for (uint16_t c = 0; c < p->depth; ++c) max = in[c] > max ? in[c] : max;
        int32_t sum = 0; /* Q12.19; at least lut[0] > 0 from the maximum itself */
        for (uint16_t c = 0; c < p->depth; ++c) sum += te_rdbpot(lut[max - in[c]], 12);
        const int headroom_plus_one = clz32((uint32_t)sum);
        const int bits_over_unit = 12 - headroom_plus_one;
        const int32_t shifted = (int32_t)(((uint32_t)sum << headroom_plus_one) - 0x80000000u);
        const int32_t scale = te_one_over_one_plus_x(shifted);
        for (uint16_t c = 0; c < p->depth; ++c) {
            const int32_t v = te_rdbpot(te_srdhm(scale, lut[max - in[c]]), bits_over_unit + 23) - 128;
            out[c] = te_clamp8(v, -128, 127);
        }
    }
}

#endif
