/* FULLY_CONNECTED, int8, for cores with the DSP extension: the input is
 * widened once into scratch in SXTB16 order (zero beyond k, so a row's last
 * word may run into the next row or TE_WEIGHT_PAD), then two output rows at
 * a time share each widened input word (SMLAD, two multiply-accumulates
 * each), two input words per trip. */
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
    const int32_t *bias = p->bias, *mult = p->mult;
    const int8_t *shift = p->shift;
    const int32_t zp = p->out_zp, lo = p->act_min, hi = p->act_max;
    for (; o + 1 < p->n_out; o += 2) {
        const int8_t *w0 = p->w + o * k, *w1 = w0 + k;
        int32_t a0 = bias[o], a1 = bias[o + 1];
        const int32_t *xp = x, *xe = x + 2 * (words & ~1);
        for (; xp < xe; xp += 4, w0 += 8, w1 += 8) {  /* two input words per trip */
            const uint32_t v0 = te_read32(w0), v1 = te_read32(w1), u0 = te_read32(w0 + 4), u1 = te_read32(w1 + 4);
            a0 = te_smlad(te_sxtb16(v0), xp[0], a0);
            a1 = te_smlad(te_sxtb16(v1), xp[0], a1);
            a0 = te_smlad(te_sxtb16_ror8(v0), xp[1], a0);
            a1 = te_smlad(te_sxtb16_ror8(v1), xp[1], a1);
            a0 = te_smlad(te_sxtb16(u0), xp[2], a0);
            a1 = te_smlad(te_sxtb16(u1), xp[2], a1);
            a0 = te_smlad(te_sxtb16_ror8(u0), xp[3], a0);
            a1 = te_smlad(te_sxtb16_ror8(u1), xp[3], a1);
        }
        if (words & 1) {
            const uint32_t v0 = te_read32(w0), v1 = te_read32(w1);
            a0 = te_smlad(te_sxtb16_ror8(v0), xp[1], te_smlad(te_sxtb16(v0), xp[0], a0));
            a1 = te_smlad(te_sxtb16_ror8(v1), xp[1], te_smlad(te_sxtb16(v1), xp[0], a1));
        }
        out[o] = te_requant(a0, mult[o], shift[o], zp, lo, hi);
        out[o + 1] = te_requant(a1, mult[o + 1], shift[o + 1], zp, lo, hi);
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
