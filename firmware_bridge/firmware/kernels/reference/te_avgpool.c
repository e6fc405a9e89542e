/* AVERAGE_POOL_2D, int8 (reference): taps outside the image are not counted. */
#include "te_kernels.h"
#include "te_fixedpoint.h"

void te_avgpool_s8(const te_avgpool_params_t *p, const int8_t *in, int8_t *out)
{
    for (int oy = 0; oy < p->out_h; ++oy) {
        for (int ox = 0; ox < p->out_w; ++ox) {
            const int y0 = oy * p->stride_h - p->pad_top;
            const int x0 = ox * p->stride_w - p->pad_left;
            const int ys = y0 < 0 ? 0 : y0, xs = x0 < 0 ? 0 : x0;
            const int ye = y0 + p->k_h > p->in_h ? p->in_h : y0 + p->k_h;
            const int xe = x0 + p->k_w > p->in_w ? p->in_w : x0 + p->k_w;
            const int32_t n = (ye - ys) * (xe - xs);
            for (int c = 0; c < p->c; ++c) {
                int32_t acc = 0;
                for (int y = ys; y < ye; ++y)
                    for (int x = xs; x < xe; ++x) acc += in[(y * p->in_w + x) * p->c + c];
                acc = acc > 0 ? (acc + n / 2) / n : (acc - n / 2) / n;
                out[(oy * p->out_w + ox) * p->c + c] = te_clamp8(acc, p->act_min, p->act_max);
            }
        }
    }
}
