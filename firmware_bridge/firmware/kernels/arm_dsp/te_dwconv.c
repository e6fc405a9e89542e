/* DEPTHWISE_CONV_2D, per-channel int8, for cores with the DSP extension.
 * Multiplier 1, 3x3, strides 1 and 2 (every MLPerf Tiny depthwise layer): input rows widened once into a
 * zero-point padded int16 ring, two taps per SMLAD, borders without tests (dw_ring below).  Other shapes:
 * four channels at a time, one word of input and one of weights per tap widened with SXTB16 and
 * accumulated with SMLABB/SMLATT; other multipliers and channel tails per channel (two taps per SMLAD). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("O3")  /* unrolls the 3x3 tap loops; -O2 keeps them rolled and spills */
#endif
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

static void per_channel(const te_conv_params_t *p, const int8_t *in, int8_t *out)
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

/* Every channel shifts right by at least one and no sum can reach 2^30: te_requant_fast is exact. */
static int fast_ok(const te_conv_params_t *p)
{
    const int32_t taps = p->k_h * p->k_w * 128 * 128;
    for (int c = 0; c < p->out_c; ++c) {
        const int32_t b = p->bias[c] < 0 ? -p->bias[c] : p->bias[c];
        if (p->shift[c] > -1 || p->bias[c] == INT32_MIN || b > (1 << 30) - 1 - taps) return 0;
    }
    return 1;
}

#define TE_DW_MAC4(v, wv)                                                                 \
    do {                                                                                  \
        const uint32_t v_ = (v), w_ = (wv);                                               \
        const int32_t xe_ = te_sxtb16(v_), xo_ = te_sxtb16_ror8(v_);                      \
        const int32_t we_ = te_sxtb16(w_), wo_ = te_sxtb16_ror8(w_);                      \
        a0 = te_smlabb(xe_, we_, a0);                                                     \
        a2 = te_smlatt(xe_, we_, a2);                                                     \
        a1 = te_smlabb(xo_, wo_, a1);                                                     \
        a3 = te_smlatt(xo_, wo_, a3);                                                     \
    } while (0)

/* One channel's output byte: the exact fast path when fast_ok() held for the layer. */
static inline uint32_t out1(int32_t acc, int32_t mult, int32_t shift, int fast, int32_t zp, int32_t lo, int32_t hi)
{
    int32_t y;
    if (fast) {
        const int32_t r = -shift;
        y = te_requant_fast(acc, mult, r, 1 << (r - 1)) + zp;
        y = y < lo ? lo : (y > hi ? hi : y);
    } else {
        y = te_requant(acc, mult, shift, zp, lo, hi);
    }
    return (uint8_t)y;
}

/* ---- 3x3, multiplier 1, strides 1 and 2: widened rows in a ring, two taps per SMLAD ----
 *
 * One group of four channels at a time: each input row the group needs is widened once into a ring of three
 * rows, one int16 plane per channel, zero-point padded on the left and right (rows outside the image are all
 * zero point), so the loops below never test a bound.  A plane row holds column pairs (x, x+1) as words, and
 * each channel's weights are (w0, w1) and (w1, w2) pairs per kernel row, doubled:
 *   out(x)   = SMLAD((h[x],   h[x+1]), (w0, w1)) + h[x+2] * w2      (SMLABT)
 *   out(x+1) = SMLAD((h[x+2], h[x+3]), (w1, w2)) + h[x+1] * w0      (SMLATB)
 * so two outputs of stride 1 take two words per kernel row; stride 2 reads (h[2x], h[2x+1]) and h[2x+2].
 * The doubled sum is what the one-instruction requantization wants (see codegen_pack.py):
 *   out = SSAT8((SMMLAR(2acc, M, rz) [+ (acc < 0)]) >> r),  rz = 2^(r-1) + out_zp * 2^r.
 * With act_min >= out_zp and the full int8 range ("plain" case of every ReLU layer with out_zp = -128) the
 * sign correction can only move an output that clamps to act_min anyway, so it is left out.
 * Per channel, a block of TE_DW_BLOCK words: 2*bias, M, rz, r, W01 and W12 of kernel rows 0, 1, 2.  Speed
 * mode links them from flash (codegen_pack.pack_dwconv); size mode builds them per group of four channels
 * from the int8 weights. */
#define TE_DW_BLOCK 10
#define TE_DW_MAGIC 0x31574454   /* "TDW1" in memory */
#define TE_DW_HEADER 4           /* MAGIC, out_c, general requantization, 0 */

/* Widened rows of a group of four channels: per channel a plane of as many rows as fit (`words` words each,
 * the last rows of one strip of output rows carried to the top for the next). */
#define TE_DW_PLANE (3 * TE_DW_RING_W / 2)   /* words per channel plane: at least three rows of the widest */
static uint32_t te_dw_buf[4 * TE_DW_PLANE];

static inline uint32_t dw_pixel(const int8_t *row, int ix, int in_w, int C, int n, uint32_t zp4)
{
    if (ix < 0 || ix >= in_w) return zp4;
    if (n == 4) return te_read32(row + ix * C);
    uint32_t v = zp4;
    for (int k = 0; k < n; ++k) v = (v & ~(0xFFu << (8 * k))) | (uint32_t)(uint8_t)row[ix * C + k] << (8 * k);
    return v;
}

static inline void dw_widen_pair(uint32_t *q, int j, uint32_t a, uint32_t b)
{
    const uint32_t lo = te_pack_lo(a, b), hi = te_pack_hi(a, b);
    q[j] = (uint32_t)te_sxtb16(lo);
    q[TE_DW_PLANE + j] = (uint32_t)te_sxtb16_ror8(lo);
    q[2 * TE_DW_PLANE + j] = (uint32_t)te_sxtb16(hi);
    q[3 * TE_DW_PLANE + j] = (uint32_t)te_sxtb16_ror8(hi);
}

/* Input row iy, channels c .. c+n-1, into the row of plane 0 at `plane` (the other planes follow at
 * TE_DW_PLANE words): column ix at halfword ix + pad_left. */
static void dw_widen_row(uint32_t *plane, const te_conv_params_t *p, const int8_t *in, int iy,
                         int c, int n, int words)
{
    const int C = p->in_c, in_w = p->in_w, pad = p->pad_left;
    const uint32_t zp4 = (uint32_t)(uint8_t)p->in_zp * 0x01010101u;
    if (iy < 0 || iy >= p->in_h) {
        const uint32_t zz = (uint32_t)te_sxtb16(zp4);
        for (int j = 0; j < words; ++j)
            plane[j] = plane[TE_DW_PLANE + j] = plane[2 * TE_DW_PLANE + j] = plane[3 * TE_DW_PLANE + j] = zz;
        return;
    }
    const int8_t *row = in + iy * in_w * C + c;
    int j = 0;
    if (n == 4) {   /* pairs whose both columns are inside: no tests */
        for (; j < words && 2 * j - pad < 0; ++j)
            dw_widen_pair(plane, j, dw_pixel(row, 2 * j - pad, in_w, C, 4, zp4),
                          dw_pixel(row, 2 * j + 1 - pad, in_w, C, 4, zp4));
        const int8_t *px = row + (2 * j - pad) * C;
        for (; j < words && 2 * j + 1 - pad < in_w; ++j, px += 2 * C)
            dw_widen_pair(plane, j, te_read32(px), te_read32(px + C));
    }
    for (; j < words; ++j)
        dw_widen_pair(plane, j, dw_pixel(row, 2 * j - pad, in_w, C, n, zp4),
                      dw_pixel(row, 2 * j + 1 - pad, in_w, C, n, zp4));
}

/* general: the sign correction and the activation clamp (see above). */
static inline __attribute__((always_inline)) int8_t dw_requant(int32_t acc, int32_t m, int32_t rz, int32_t r,
                                                                int general, int32_t lo, int32_t hi)
{
    int32_t t = te_smmlar(acc, m, rz);
    if (general) {
        t = (t + (acc >> 31)) >> r;
        return (int8_t)(t < lo ? lo : (t > hi ? hi : t));
    }
    return (int8_t)te_ssat8(t >> r);
}

/* Kernel row t of four outputs: a0..a3 += taps of ring row q (words from the pair of output 0). */
#define TE_DW_TAPS4_S1(q, u, v, first)                                                                     \
    do {                                                                                                   \
        const uint32_t x0 = (q)[0], x1 = (q)[1], x2 = (q)[2];                                              \
        a0 = te_smlad(x0, u, first ? b2 : a0); a0 = te_smlabt(x1, v, a0);                                  \
        a1 = te_smlad(x1, v, first ? b2 : a1); a1 = te_smlatb(x0, u, a1);                                  \
        a2 = te_smlad(x1, u, first ? b2 : a2); a2 = te_smlabt(x2, v, a2);                                  \
        a3 = te_smlad(x2, v, first ? b2 : a3); a3 = te_smlatb(x1, u, a3);                                  \
    } while (0)
#define TE_DW_TAPS4_S2(q, u, v, first)                                                                     \
    do {                                                                                                   \
        const uint32_t x0 = (q)[0], x1 = (q)[1], x2 = (q)[2], x3 = (q)[3], x4 = (q)[4];                   \
        a0 = te_smlad(x0, u, first ? b2 : a0); a0 = te_smlabt(x1, v, a0);                                  \
        a1 = te_smlad(x1, u, first ? b2 : a1); a1 = te_smlabt(x2, v, a1);                                  \
        a2 = te_smlad(x2, u, first ? b2 : a2); a2 = te_smlabt(x3, v, a2);                                  \
        a3 = te_smlad(x3, u, first ? b2 : a3); a3 = te_smlabt(x4, v, a3);                                  \
    } while (0)

/* One output of a kernel row (any stride): pair (x, x+1) and x+2. */
static inline int32_t dw_taps1(const uint32_t *q, int32_t u, int32_t v, int32_t a)
{
    return te_smlabt(q[1], v, te_smlad(q[0], u, a));
}

/* One output row of one channel: q = its plane's first widened row (the next kernel rows follow at `pitch`
 * words), weights and constants in b.  Four outputs per pass; the weights are re-read every pass (one LDRD
 * per kernel row) rather than spilled, which is what the register file allows. */
static inline __attribute__((always_inline)) void dw_row(const uint32_t *q, const int32_t *b, int8_t *o, int C,
                                                          int out_w, int pitch, int stride, int general,
                                                          int32_t lo, int32_t hi)
{
    const uint32_t *end = q + (out_w / 4) * 2 * stride;
    for (; q < end; q += 2 * stride, o += 4 * C) {
        const int32_t *bp = b;
        __asm__("" : "+r"(bp));   /* keep the block's words as loads in the loop, not spilled copies */
        const int32_t b2 = bp[0];
        int32_t a0, a1, a2, a3;
        if (stride == 1) {
            TE_DW_TAPS4_S1(q, bp[4], bp[5], 1);
            TE_DW_TAPS4_S1(q + pitch, bp[6], bp[7], 0);
            TE_DW_TAPS4_S1(q + 2 * pitch, bp[8], bp[9], 0);
        } else {
            TE_DW_TAPS4_S2(q, bp[4], bp[5], 1);
            TE_DW_TAPS4_S2(q + pitch, bp[6], bp[7], 0);
            TE_DW_TAPS4_S2(q + 2 * pitch, bp[8], bp[9], 0);
        }
        const int32_t m = bp[1], rz = bp[2], r = bp[3];
        o[0] = dw_requant(a0, m, rz, r, general, lo, hi);
        o[C] = dw_requant(a1, m, rz, r, general, lo, hi);
        o[2 * C] = dw_requant(a2, m, rz, r, general, lo, hi);
        o[3 * C] = dw_requant(a3, m, rz, r, general, lo, hi);
    }
    /* the last out_w % 4 outputs, one at a time: output i reads from word i * stride / 2 */
    for (int i = 0; i < (out_w & 3); ++i, o += C) {
        const uint32_t *qi = q + (stride == 1 ? i / 2 : i);
        int32_t a;
        if (stride == 1 && (i & 1)) {   /* pair (x+1, x+2) straddles two words: (x+2, x+3) with (w1, w2) */
            a = te_smlatb(qi[0], b[4], te_smlad(qi[1], b[5], b[0]));
            a = te_smlatb(qi[pitch], b[6], te_smlad(qi[pitch + 1], b[7], a));
            a = te_smlatb(qi[2 * pitch], b[8], te_smlad(qi[2 * pitch + 1], b[9], a));
        } else {
            a = dw_taps1(qi, b[4], b[5], b[0]);
            a = dw_taps1(qi + pitch, b[6], b[7], a);
            a = dw_taps1(qi + 2 * pitch, b[8], b[9], a);
        }
        o[0] = dw_requant(a, b[1], b[2], b[3], general, lo, hi);
    }
}

/* `rows` output rows of one channel of a strip: kernel row 0 of output row i at q + i * stride * pitch. */
#define TE_DW_ROWS_FN(name, stride, general)                                                                    \
    static void name(const uint32_t *q, const int32_t *b, int8_t *o, int C, int out_w, int pitch, int rows,     \
                     int32_t lo, int32_t hi)                                                                    \
    {                                                                                                           \
        for (int i = 0; i < rows; ++i, q += stride * pitch, o += out_w * C)                                    \
            dw_row(q, b, o, C, out_w, pitch, stride, general, lo, hi);                                          \
    }
TE_DW_ROWS_FN(dw_rows_s1, 1, 0)
TE_DW_ROWS_FN(dw_rows_s2, 2, 0)
TE_DW_ROWS_FN(dw_rows_s1_general, 1, 1)
TE_DW_ROWS_FN(dw_rows_s2_general, 2, 1)

typedef void (*dw_rows_fn)(const uint32_t *, const int32_t *, int8_t *, int, int, int, int, int32_t, int32_t);

static int dw_ring_words(const te_conv_params_t *p) { return ((p->out_w - 1) * p->stride_w + 4 + 1) / 2; }

static int dw_ring_shape_ok(const te_conv_params_t *p)
{
    return p->depth_mult == 1 && p->k_h == 3 && p->k_w == 3 && p->dil_h == 1 && p->dil_w == 1 &&
           (p->stride_w == 1 || p->stride_w == 2) && (p->stride_h == 1 || p->stride_h == 2) &&
           2 * dw_ring_words(p) <= TE_DW_RING_W;
}

static int dw_general(const te_conv_params_t *p)
{
    return p->act_min < p->out_zp || p->act_min > -128 || p->act_max < 127;
}

/* Size mode: the blocks are exact for every channel (as codegen_pack.why_not_packed_dw proves on the host). */
static int dw_plain_ok(const te_conv_params_t *p)
{
    if (!dw_ring_shape_ok(p)) return 0;
    for (int c = 0; c < p->out_c; ++c) {
        const int64_t b = p->bias[c] < 0 ? -(int64_t)p->bias[c] : p->bias[c];
        const int r = -p->shift[c];
        if (p->mult[c] <= 0 || r < 1 || r > 30 || b + 9 * 128 * 128 >= (1 << 30)) return 0;
        const int64_t rz = ((int64_t)1 << (r - 1)) + (int64_t)p->out_zp * ((int64_t)1 << r);
        if (rz >= (1 << 30) || rz <= -(1 << 30)) return 0;
    }
    return 1;
}

static void dw_plain_blocks(const te_conv_params_t *p, int c, int n, int32_t *blk)
{
    const int C = p->out_c;
    for (int k = 0; k < n; ++k, blk += TE_DW_BLOCK) {
        const int ch = c + k, r = -p->shift[ch];
        const int8_t *w = p->w + ch;
        blk[0] = 2 * p->bias[ch];
        blk[1] = p->mult[ch];
        blk[2] = (int32_t)(((int64_t)1 << (r - 1)) + (int64_t)p->out_zp * ((int64_t)1 << r));
        blk[3] = r;
        for (int ky = 0; ky < 3; ++ky) {
            const int32_t w0 = 2 * w[(3 * ky) * C], w1 = 2 * w[(3 * ky + 1) * C], w2 = 2 * w[(3 * ky + 2) * C];
            blk[4 + 2 * ky] = (int32_t)(((uint32_t)w0 & 0xFFFFu) | ((uint32_t)w1 << 16));
            blk[5 + 2 * ky] = (int32_t)(((uint32_t)w1 & 0xFFFFu) | ((uint32_t)w2 << 16));
        }
    }
}

/* blocks: the packed blocks of every channel (speed mode) or NULL (built here from the plain arrays). */
static void dw_ring(const te_conv_params_t *p, const int8_t *in, int8_t *out, const int32_t *blocks, int general)
{
    const int C = p->in_c, out_h = p->out_h, out_w = p->out_w, sh = p->stride_h, words = dw_ring_words(p);
    const int cap = TE_DW_PLANE / words;                /* widened rows a plane holds (>= 3) */
    const int strip = (cap - 3) / sh + 1;               /* output rows per strip */
    const int32_t lo = p->act_min, hi = p->act_max;
    const dw_rows_fn rows = p->stride_w == 1 ? (general ? dw_rows_s1_general : dw_rows_s1)
                                             : (general ? dw_rows_s2_general : dw_rows_s2);
    int32_t local[4 * TE_DW_BLOCK];
    for (int c = 0; c < C; c += 4) {
        const int n = C - c < 4 ? C - c : 4;
        const int32_t *blk = blocks ? blocks + c * TE_DW_BLOCK : local;
        if (!blocks) dw_plain_blocks(p, c, n, local);
        int have = 0;   /* widened rows at the top of the planes, from input row y0 on */
        for (int oy = 0; oy < out_h; oy += strip) {
            const int m = out_h - oy < strip ? out_h - oy : strip;
            const int y0 = oy * sh - p->pad_top, need = (m - 1) * sh + 3;
            for (int t = have; t < need; ++t) dw_widen_row(te_dw_buf + t * words, p, in, y0 + t, c, n, words);
            rows(te_dw_buf, blk, out + oy * out_w * C + c, C, out_w, words, m, lo, hi);
            for (int k = 1; k < n; ++k)
                rows(te_dw_buf + k * TE_DW_PLANE, blk + k * TE_DW_BLOCK, out + oy * out_w * C + c + k, C, out_w,
                     words, m, lo, hi);
            have = need - m * sh;   /* rows the next strip starts with: move them up */
            if (have > 0)
                for (int k = 0; k < n; ++k)
                    memmove(te_dw_buf + k * TE_DW_PLANE, te_dw_buf + k * TE_DW_PLANE + m * sh * words,
                            (size_t)have * words * 4);
            else
                have = 0;
        }
    }
}

void te_dwconv_s8(const te_conv_params_t *p, const int8_t *in, int8_t *out)
{
    if (p->mult == 0) {   /* speed mode: blocks packed on the host (codegen_pack.pack_dwconv) */
        const int32_t *words = (const int32_t *)(const void *)p->w;
        if (words[0] != TE_DW_MAGIC || words[1] != p->out_c || !dw_ring_shape_ok(p))
            __builtin_trap();   /* a header that disagrees with the layer: generator and kernel out of step */
        dw_ring(p, in, out, words + TE_DW_HEADER, words[2]);
        return;
    }
    if (dw_plain_ok(p)) {
        dw_ring(p, in, out, 0, dw_general(p));
        return;
    }
    if (p->depth_mult != 1 || p->in_c < 4) {
        per_channel(p, in, out);
        return;
    }
    /* Everything the loops read from p, in locals: the int8 stores below may alias any memory. */
    const int C = p->in_c, C2 = 2 * C, C4 = C & ~3, row = p->in_w * C;
    const int in_h = p->in_h, in_w = p->in_w, k_h = p->k_h, k_w = p->k_w, dil_h = p->dil_h, dil_w = p->dil_w;
    const int out_h = p->out_h, out_w = p->out_w, stride_h = p->stride_h, stride_w = p->stride_w;
    const int8_t *weights = p->w, *shift = p->shift;
    const int32_t *bias = p->bias, *mult = p->mult;
    const int32_t zp = p->out_zp, lo = p->act_min, hi = p->act_max;
    const uint32_t zp4 = (uint32_t)(uint8_t)p->in_zp * 0x01010101u;
    const int fast = fast_ok(p);
    const int k3 = k_h == 3 && k_w == 3 && dil_h == 1 && dil_w == 1;
    for (int oy = 0; oy < out_h; ++oy) {
        const int y0 = oy * stride_h - p->pad_top;
        const int rows_in = y0 >= 0 && y0 + (k_h - 1) * dil_h < in_h;
        for (int ox = 0; ox < out_w; ++ox) {
            const int x0 = ox * stride_w - p->pad_left;
            int8_t *o = out + (oy * out_w + ox) * C;
            const int interior = rows_in && x0 >= 0 && x0 + (k_w - 1) * dil_w < in_w;
            const int8_t *pix = in + (y0 * in_w + x0) * C;
            for (int c = 0; c < C4; c += 4) {
                int32_t a0 = bias[c], a1 = bias[c + 1], a2 = bias[c + 2], a3 = bias[c + 3];
                const int8_t *w = weights + c;
                if (interior && k3) {
                    const int8_t *ip = pix + c;
                    const int8_t *w1 = w + 3 * C, *w2 = w1 + 3 * C, *i1 = ip + row, *i2 = i1 + row;
                    TE_DW_MAC4(te_read32(ip), te_read32(w));
                    TE_DW_MAC4(te_read32(ip + C), te_read32(w + C));
                    TE_DW_MAC4(te_read32(ip + C2), te_read32(w + C2));
                    TE_DW_MAC4(te_read32(i1), te_read32(w1));
                    TE_DW_MAC4(te_read32(i1 + C), te_read32(w1 + C));
                    TE_DW_MAC4(te_read32(i1 + C2), te_read32(w1 + C2));
                    TE_DW_MAC4(te_read32(i2), te_read32(w2));
                    TE_DW_MAC4(te_read32(i2 + C), te_read32(w2 + C));
                    TE_DW_MAC4(te_read32(i2 + C2), te_read32(w2 + C2));
                } else {
                    for (int ky = 0; ky < k_h; ++ky) {
                        const int iy = y0 + ky * dil_h;
                        for (int kx = 0; kx < k_w; ++kx, w += C) {
                            const int ix = x0 + kx * dil_w;
                            const int inside = iy >= 0 && iy < in_h && ix >= 0 && ix < in_w;
                            TE_DW_MAC4(inside ? te_read32(in + (iy * in_w + ix) * C + c) : zp4, te_read32(w));
                        }
                    }
                }
                const uint32_t word = out1(a0, mult[c], shift[c], fast, zp, lo, hi) |
                                      out1(a1, mult[c + 1], shift[c + 1], fast, zp, lo, hi) << 8 |
                                      out1(a2, mult[c + 2], shift[c + 2], fast, zp, lo, hi) << 16 |
                                      out1(a3, mult[c + 3], shift[c + 3], fast, zp, lo, hi) << 24;
                memcpy(o + c, &word, 4);
            }
            for (int c = C4; c < C; ++c) {
                const int32_t acc = tap_sum(p, in, y0, x0, c, c);
                o[c] = te_requant(acc, p->mult[c], p->shift[c], p->out_zp, p->act_min, p->act_max);
            }
        }
    }
}
