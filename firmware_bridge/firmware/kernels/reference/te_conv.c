/* CONV_2D, per-channel int8 (reference). */
#include "te_kernels.h"
#include "te_fixedpoint.h"

const char te_kernels_name[] = "reference";

void te_conv_s8(const te_conv_params_t *p, const int8_t *in, int8_t *out, void *scratch)
{
    (void)scratch;
    const int k_len = p->k_h * p->k_w * p->in_c;
    for (int oy = 0; oy < p->out_h; ++oy) {
        for (int ox = 0; ox < p->out_w; ++ox) {
            const int y0 = oy * p->stride_h - p->pad_top;
            const int x0 = ox * p->stride_w - p->pad_left;
            for (int oc = 0; oc < p->out_c; ++oc) {
                const int8_t *w = p->w + oc * k_len;
                int32_t acc = p->bias[oc];
                for (int ky = 0; ky < p->k_h; ++ky) {
                    const int iy = y0 + ky * p->dil_h;
                    for (int kx = 0; kx < p->k_w; ++kx, w += p->in_c) {
                        const int ix = x0 + kx * p->dil_w;
                        if (iy < 0 || iy >= p->in_h || ix < 0 || ix >= p->in_w) {
                            /* outside the image: the input is the zero point */
                            for (int ic = 0; ic < p->in_c; ++ic) acc += w[ic] * p->in_zp;
                            continue;
                        }
                        const int8_t *x = in + (iy * p->in_w + ix) * p->in_c;
                        for (int ic = 0; ic < p->in_c; ++ic) acc += w[ic] * x[ic];
                    }
                }
                const int32_t v = te_mbqm(acc, p->mult[oc], p->shift[oc]) + p->out_zp;
                out[(oy * p->out_w + ox) * p->out_c + oc] = te_clamp8(v, p->act_min, p->act_max);
            }
        }
    }
}
