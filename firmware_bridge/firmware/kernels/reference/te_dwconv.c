/* DEPTHWISE_CONV_2D, per-channel int8 (reference). */
#include "te_kernels.h"
#include "te_fixedpoint.h"

void te_dwconv_s8(const te_conv_params_t *p, const int8_t *in, int8_t *out)
{
    const int m = p->depth_mult;
    for (int oy = 0; oy < p->out_h; ++oy) {
        for (int ox = 0; ox < p->out_w; ++ox) {
            const int y0 = oy * p->stride_h - p->pad_top;
            const int x0 = ox * p->stride_w - p->pad_left;
            for (int oc = 0; oc < p->out_c; ++oc) {
                const int ic = oc / m;
                int32_t acc = p->bias[oc];
                for (int ky = 0; ky < p->k_h; ++ky) {
                    const int iy = y0 + ky * p->dil_h;
                    for (int kx = 0; kx < p->k_w; ++kx) {
                        const int ix = x0 + kx * p->dil_w;
                        const int32_t w = p->w[(ky * p->k_w + kx) * p->out_c + oc];
                        const int inside = iy >= 0 && iy < p->in_h && ix >= 0 && ix < p->in_w;
                        acc += w * (inside ? in[(iy * p->in_w + ix) * p->in_c + ic] : p->in_zp);
                    }
                }
                const int32_t v = te_mbqm(acc, p->mult[oc], p->shift[oc]) + p->out_zp;
                out[(oy * p->out_w + ox) * p->out_c + oc] = te_clamp8(v, p->act_min, p->act_max);
            }
        }
    }
}
