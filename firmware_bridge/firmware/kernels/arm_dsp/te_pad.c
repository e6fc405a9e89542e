/* PAD / PADV2, int8, for cores with the DSP extension: whole rows are
 * filled or copied with memset/memcpy. */
#include <string.h>

#include "te_kernels.h"
#include "te_dsp.h"

void te_pad_s8(const te_pad_params_t *p, const int8_t *in, int8_t *out)
{
    const int row = p->out_w * p->out_c;
    for (int y = 0; y < p->out_h; ++y) {
        int8_t *o = out + y * row;
        const int iy = y - p->pad_top;
        if (iy < 0 || iy >= p->in_h) {
            memset(o, p->value, (size_t)row);
            continue;
        }
        if (p->in_c == p->out_c) {
            const int left = p->pad_left * p->out_c, body = p->in_w * p->in_c;
            memset(o, p->value, (size_t)left);
            memcpy(o + left, in + iy * body, (size_t)body);
            memset(o + left + body, p->value, (size_t)(row - left - body));
            continue;
        }
        for (int x = 0; x < p->out_w; ++x) {
            const int ix = x - p->pad_left;
            int8_t *px = o + x * p->out_c;
            memset(px, p->value, p->out_c);
            if (ix >= 0 && ix < p->in_w) memcpy(px + p->pad_front, in + (iy * p->in_w + ix) * p->in_c, p->in_c);
        }
    }
}
