/* MEAN over H and W, int8 (reference). */
#include "te_kernels.h"
#include "te_fixedpoint.h"

void te_mean_s8(const te_mean_params_t *p, const int8_t *in, int8_t *out)
{
    const int32_t count = (int32_t)p->h * p->w;
    for (int c = 0; c < p->c; ++c) {
        int32_t sum = 0;
        for (int i = 0; i < count; ++i) sum += in[i * p->c + c];
        const int32_t v = te_mbqm(sum - p->in_zp * count, p->mult, p->shift) + p->out_zp;
        out[c] = te_clamp8(v, -128, 127);
    }
}
