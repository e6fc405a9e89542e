/* FULLY_CONNECTED, int8, for cores with the DSP extension: the input is
 * widened once into scratch in SXTB16 order (zero beyond k, so a row's last
 * word may run into the next row or TE_WEIGHT_PAD), then two output rows at
 * a time share each input word (SMLAD, two multiply-accumulates each). */
#include "te_kernels.h"
#include "te_dsp.h"

void te_fc_s8(const te_fc_params_t *p, const int8_t *in, int8_t *out, void *scratch)
{
    const int k = p->k, k4 = k & ~3, words = (k + 3) >> 2;
    int32_t *x = (int32_t *)scratch;
    for (int i = 0; i < k4; i += 4) {
        const uint32_t v = te_read32(in + i);
        x[i >> 1] = te_sxtb16(v);
        x[(i >> 1) + 1] = te_sxtb16_ror8(v);
    }
    if (k != k4) {
        uint32_t v = 0;
        for (int j = 0; j < k - k4; ++j) v |= (uint32_t)(uint8_t)in[k4 + j] << (8 * j);
        x[k4 >> 1] = te_sxtb16(v);
        x[(k4 >> 1) + 1] = te_sxtb16_ror8(v);
    }
    int o = 0;
    for (; o + 1 < p->n_out; o += 2) {
        const int8_t *w0 = p->w + o * k, *w1 = w0 + k;
        int32_t a0 = p->bias[o], a1 = p->bias[o + 1];
        for (int i = 0; i < words; ++i) {
            const int32_t xl = x[2 * i], xh = x[2 * i + 1];
            uint32_t v = te_read32(w0 + 4 * i);
            a0 = te_smlad(te_sxtb16_ror8(v), xh, te_smlad(te_sxtb16(v), xl, a0));
            v = te_read32(w1 + 4 * i);
            a1 = te_smlad(te_sxtb16_ror8(v), xh, te_smlad(te_sxtb16(v), xl, a1));
        }
        out[o] = te_requant(a0, p->mult[o], p->shift[o], p->out_zp, p->act_min, p->act_max);
        out[o + 1] = te_requant(a1, p->mult[o + 1], p->shift[o + 1], p->out_zp, p->act_min, p->act_max);
    }
    if (o < p->n_out) {
        const int8_t *w0 = p->w + o * k;
        int32_t a0 = p->bias[o];
        for (int i = 0; i < words; ++i) {
            const uint32_t v = te_read32(w0 + 4 * i);
            a0 = te_smlad(te_sxtb16_ror8(v), x[2 * i + 1], te_smlad(te_sxtb16(v), x[2 * i], a0));
        }
        out[o] = te_requant(a0, p->mult[o], p->shift[o], p->out_zp, p->act_min, p->act_max);
    }
}
