/* DEPTHWISE_CONV_2D, per-channel int8, for cores with the DSP extension:
 * interior pixels skip the bounds tests and pair two taps per SMLAD. */
#include "te_kernels.h"
#include "te_dsp.h"

static int32_t tap_sum(const te_conv_params_t *p, const int8_t *in, int y0, int x0, int oc, int ic)
{
    int32_t acc = p->bias[oc];
    const int interior = y0 >= 0 && x0 >= 0 && y0 + (p->k_h - 1) * p->dil_h < p->in_h &&
                         x0 + (p->k_w - 1) * p->dil_w < p->in_w;
    const int8_t *w = p->w + oc;
    if (interior) {
        const int n = p->k_h * p->k_w;
        int t = 0;
        for (; t + 1 < n; t += 2) {
            const int ky0 = t / p->k_w, kx0 = t % p->k_w, ky1 = (t + 1) / p->k_w, kx1 = (t + 1) % p->k_w;
            const int32_t xv = (uint16_t)in[((y0 + ky0 * p->dil_h) * p->in_w + x0 + kx0 * p->dil_w) * p->in_c + ic] |
                               ((int32_t)in[((y0 + ky1 * p->dil_h) * p->in_w + x0 + kx1 * p->dil_w) * p->in_c + ic]
                                << 16);
            const int32_t wv = (uint16_t)w[t * p->out_c] | ((int32_t)w[(t + 1) * p->out_c] << 16);
            acc = te_smlad(wv, xv, acc);
        }
        if (t < n) {
            const int ky = t / p->k_w, kx = t % p->k_w;
            acc += w[t * p->out_c] * in[((y0 + ky * p->dil_h) * p->in_w + x0 + kx * p->dil_w) * p->in_c + ic];
        }
        return acc;
    }
    for (int ky = 0; ky < p->k_h; ++ky) {
        const int iy = y0 + ky * p->dil_h;
        for (int kx = 0; kx < p->k_w; ++kx) {
            const int ix = x0 + kx * p->dil_w;
            const int inside = iy >= 0 && iy < p->in_h && ix >= 0 && ix < p->in_w;
            acc += w[(ky * p->k_w + kx) * p->out_c] * (inside ? in[(iy * p->in_w + ix) * p->in_c + ic] : p->in_zp);
        }
    }
    return acc;
}

void te_dwconv_s8(const te_conv_params_t *p, const int8_t *in, int8_t *out)
{
    for (int oy = 0; oy < p->out_h; ++oy) {
        for (int ox = 0; ox < p->out_w; ++ox) {
            const int y0 = oy * p->stride_h - p->pad_top, x0 = ox * p->stride_w - p->pad_left;
            int8_t *o = out + (oy * p->out_w + ox) * p->out_c;
            for (int oc = 0; oc < p->out_c; ++oc) {
                const int32_t acc = tap_sum(p, in, y0, x0, oc, oc / p->depth_mult);
                o[oc] = te_requant(acc, p->mult[oc], p->shift[oc], p->out_zp, p->act_min, p->act_max);
            }
        }
    }
}
