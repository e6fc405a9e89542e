/* AVERAGE_POOL_2D, int8, for cores with the DSP extension.
 *
 * Windows of at most 255 pixels (every MLPerf Tiny pool) sum eight channels
 * at a time in int16 lanes: one LDRD of two words, then SXTAB16 and its
 * ROR-8 form add the even and the odd bytes of each word into four lane
 * pairs (255 * 128 < 2^15, so a lane cannot overflow).  Rows of a window that
 * spans the whole width are one run of pixels.  Channel tails and larger
 * windows take the per-channel loop.  Rounding and clamping as the reference. */
#include "te_kernels.h"
#include "te_dsp.h"

#define LANE_MAX_PIXELS 255

static inline int8_t finish(int32_t acc, int32_t n, const te_avgpool_params_t *p)
{
    acc = acc > 0 ? (acc + n / 2) / n : (acc - n / 2) / n;
    return (int8_t)(acc < p->act_min ? p->act_min : (acc > p->act_max ? p->act_max : acc));
}

/* Channels [ch, ch + 8) of one window: `runs` runs of `len` pixels, `skip` bytes from one run's start to the next. */
static void sum8(const int8_t *first, int runs, int len, int c, int skip, int32_t n, const te_avgpool_params_t *p,
                 int8_t *o)
{
    int32_t e0 = 0, o0 = 0, e1 = 0, o1 = 0;
    for (int r = 0; r < runs; ++r, first += skip) {
        const int8_t *px = first;
        for (int x = 0; x < len; ++x, px += c) {
            const uint32_t a = te_read32(px), b = te_read32(px + 4);
            e0 = te_sxtab16(e0, a);
            o0 = te_sxtab16_ror8(o0, a);
            e1 = te_sxtab16(e1, b);
            o1 = te_sxtab16_ror8(o1, b);
        }
    }
    o[0] = finish(te_lo16(e0), n, p);
    o[1] = finish(te_lo16(o0), n, p);
    o[2] = finish(te_hi16(e0), n, p);
    o[3] = finish(te_hi16(o0), n, p);
    o[4] = finish(te_lo16(e1), n, p);
    o[5] = finish(te_lo16(o1), n, p);
    o[6] = finish(te_hi16(e1), n, p);
    o[7] = finish(te_hi16(o1), n, p);
}

static void sum4(const int8_t *first, int runs, int len, int c, int skip, int32_t n, const te_avgpool_params_t *p,
                 int8_t *o)
{
    int32_t e = 0, od = 0;
    for (int r = 0; r < runs; ++r, first += skip) {
        const int8_t *px = first;
        for (int x = 0; x < len; ++x, px += c) {
            const uint32_t a = te_read32(px);
            e = te_sxtab16(e, a);
            od = te_sxtab16_ror8(od, a);
        }
    }
    o[0] = finish(te_lo16(e), n, p);
    o[1] = finish(te_lo16(od), n, p);
    o[2] = finish(te_hi16(e), n, p);
    o[3] = finish(te_hi16(od), n, p);
}

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
            const int8_t *first = in + (ys * p->in_w + xs) * c;
            /* whole-width windows: the rows follow each other in memory, one run */
            const int whole = xs == 0 && xe == p->in_w;
            const int runs = whole ? 1 : ye - ys, len = whole ? n : xe - xs, skip = p->in_w * c;
            int ch = 0;
            if (n > 0 && n <= LANE_MAX_PIXELS) {
                for (; ch + 8 <= c; ch += 8) sum8(first + ch, runs, len, c, skip, n, p, o + ch);
                for (; ch + 4 <= c; ch += 4) sum4(first + ch, runs, len, c, skip, n, p, o + ch);
            }
            for (; ch < c; ++ch) {
                int32_t acc = 0;
                for (int y = ys; y < ye; ++y) {
                    const int8_t *row = in + (y * p->in_w) * c + ch;
                    for (int x = xs; x < xe; ++x) acc += row[x * c];
                }
                o[ch] = finish(acc, n, p);
            }
        }
    }
}
