/* PAD / PADV2, int8 (reference). */
#include "te_kernels.h"

void te_pad_s8(const te_pad_params_t *p, const int8_t *in, int8_t *out)
{
    for (int y = 0; y < p->out_h; ++y) {
        for (int x = 0; x < p->out_w; ++x) {
            const int iy = y - p->pad_top, ix = x - p->pad_left;
            const int inside = iy >= 0 && iy < p->in_h && ix >= 0 && ix < p->in_w;
            for (int c = 0; c < p->out_c; ++c) {
                const int ic = c - p->pad_front;
                const int take = inside && ic >= 0 && ic < p->in_c;
                out[(y * p->out_w + x) * p->out_c + c] = take ? in[(iy * p->in_w + ix) * p->in_c + ic] : p->value;
            }
        }
    }
}
