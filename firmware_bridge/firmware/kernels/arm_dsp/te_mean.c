/* MEAN over H and W, int8, for cores with the DSP extension: four channels
 * per word, summed as int16 pairs with SXTAB16 (flushed to int32 every 256
 * pixels, before an int16 half could overflow). */
#include "te_kernels.h"
#include "te_dsp.h"

static int8_t finish(const te_mean_params_t *p, int32_t sum, int32_t count)
{
    return te_requant(sum - p->in_zp * count, p->mult, p->shift, p->out_zp, -128, 127);
}

void te_mean_s8(const te_mean_params_t *p, const int8_t *in, int8_t *out)
{
    const int32_t count = (int32_t)p->h * p->w, c = p->c;
    int ch = 0;
    for (; ch + 3 < c; ch += 4) {
        int32_t s02 = 0, s13 = 0;  /* int32 totals of channels 0/2 and 1/3 */
        int32_t t0 = 0, t1 = 0, t2 = 0, t3 = 0;
        const int8_t *src = in + ch;
        for (int32_t i = 0; i < count;) {
            const int32_t stop = count - i > 256 ? i + 256 : count;
            s02 = 0;
            s13 = 0;
            for (; i < stop; ++i, src += c) {
                const uint32_t v = te_read32(src);
                s02 = te_sxtab16(s02, v);
                s13 = te_sxtab16_ror8(s13, v);
            }
            t0 += te_lo16(s02);
            t2 += te_hi16(s02);
            t1 += te_lo16(s13);
            t3 += te_hi16(s13);
        }
        out[ch] = finish(p, t0, count);
        out[ch + 1] = finish(p, t1, count);
        out[ch + 2] = finish(p, t2, count);
        out[ch + 3] = finish(p, t3, count);
    }
    for (; ch < c; ++ch) {
        int32_t sum = 0;
        for (int32_t i = 0; i < count; ++i) sum += in[i * c + ch];
        out[ch] = finish(p, sum, count);
    }
}
