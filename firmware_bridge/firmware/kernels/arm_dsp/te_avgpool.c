/* AVERAGE_POOL_2D, int8, for cores with the DSP extension: the window
 * bounds are computed once per output pixel, channels run innermost. */
#include "te_kernels.h"
#include "te_dsp.h"

void te_avgpool_s8(const te_avgpool_params_t *p, const int8_t *in, int8_t *out)
{
    const int c = p->c;
    for (int oy = 0; oy < p->out_h; ++oy) {
        const int y0 = oy * p->stride_h - p->pad_top;
        const int ys = y0 < 0 ? 0 : y0, ye = y0 + p->k_h > p->in_h ? p->in_h : y0 + p->k_h;
        for (int ox = 0; ox < p->out_w; ++ox) {
            const int x0 = ox * p->stride_w - p->pad_left;
            const int xs = x0 < 0 ? 0 : x0, xe = x0 + p->k_w > p->in_w ? p->in_w : x0 + p->k_w;
            const int32_t n = (ye - ys) * (xe - xs);
            int8_t *o = out + (oy * p->out_w + ox) * c;
            for (int ch = 0; ch < c; ++ch) {
                int32_t acc = 0;
                for (int y = ys; y < ye; ++y) {
                    const int8_t *row = in + (y * p->in_w) * c + ch;
                    for (int x = xs; x < xe; ++x) acc += row[x * c];
                }
                acc = acc > 0 ? (acc + n / 2) / n : (acc - n / 2) / n;
                o[ch] = (int8_t)(acc < p->act_min ? p->act_min : (acc > p->act_max ? p->act_max : acc));
            }
        }
    }
}
