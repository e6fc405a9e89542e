/* FULLY_CONNECTED, int8 (reference). */
#include "te_kernels.h"
#include "te_fixedpoint.h"

void te_fc_s8(const te_fc_params_t *p, const int8_t *in, int8_t *out, void *scratch)
{
    (void)scratch;
    for (int o = 0; o < p->n_out; ++o) {
        const int8_t *w = p->w + o * p->k;
        int32_t acc = p->bias[o];
        for (int i = 0; i < p->k; ++i) acc += w[i] * in[i];
        const int32_t v = te_mbqm(acc, p->mult[o], p->shift[o]) + p->out_zp;
        out[o] = te_clamp8(v, p->act_min, p->act_max);
    }
}
