/* ADD with rescaling, int8 (reference). */
#include "te_kernels.h"
#include "te_fixedpoint.h"

#define TE_ADD_LEFT_SHIFT 20

void te_add_s8(const te_add_params_t *p, const int8_t *a, const int8_t *b, int8_t *out)
{
    for (uint32_t i = 0; i < p->size; ++i) {
        const int32_t x = (p->in1_offset + a[i]) * (1 << TE_ADD_LEFT_SHIFT);
        const int32_t y = (p->in2_offset + b[i]) * (1 << TE_ADD_LEFT_SHIFT);
        const int32_t sx = te_rdbpot(te_srdhm(x, p->in1_mult), -p->in1_shift);
        const int32_t sy = te_rdbpot(te_srdhm(y, p->in2_mult), -p->in2_shift);
        const int32_t v = te_rdbpot(te_srdhm(sx + sy, p->out_mult), -p->out_shift) + p->out_zp;
        out[i] = te_clamp8(v, p->act_min, p->act_max);
    }
}
