/* DEPTHWISE_CONV_2D, per-channel int8, for cores with the DSP extension.
 * Multiplier 1, 3x3, strides 1 and 2 (every MLPerf Tiny depthwise layer): input lines (rows, or columns of maps
 * taller than wide) widened once into zero-point padded int16 planes, two taps per SMLAD, borders without tests,
 * four/two/one-output passes in assembly for the plain requantization (dw_ring below, te_dwconv_asm.h).  Other
 * shapes: four channels at a time, one word of input and one of weights per tap widened with SXTB16 and
 * accumulated with SMLABB/SMLATT; other multipliers and channel tails per channel (two taps per SMLAD). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("O3")  /* unrolls the 3x3 tap loops; -O2 keeps them rolled and spills */
#endif
#include "te_kernels.h"
#include "te_dsp.h"
#include "te_dwconv_asm.h"

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

/* ---- 3x3, multiplier 1, strides 1 and 2: widened lines, two taps per SMLAD ----
 *
 * One group of four channels at a time: each input line the group needs is widened once into int16 planes,
 * one per channel, zero-point padded on both ends (lines outside the image are all zero point), so the passes
 * never test a bound.  A line is an image row, or an image column when the map is taller than wide
 * (dw_view_t, "transposed": the 25x5 DS-CNN map then gives lines of 25 outputs instead of 5, so the
 * remainder passes run five times less often); the kernel is transposed with it.  A line holds column pairs
 * (x, x+1) as words, and each channel's weights are (w0, w1) and (w1, w2) pairs per kernel row, doubled:
 *   out(x)   = SMLAD((h[x],   h[x+1]), (w0, w1)) + h[x+2] * w2      (SMLABT)
 *   out(x+1) = SMLAD((h[x+2], h[x+3]), (w1, w2)) + h[x+1] * w0      (SMLATB)
 * so two outputs of stride 1 take two words per kernel row; stride 2 reads (h[2x], h[2x+1]) and h[2x+2].
 * The doubled sum is what the one-instruction requantization wants (see codegen_pack.py):
 *   out = SSAT8((SMMLAR(2acc, M, rz) [+ (acc < 0)]) >> r),  rz = 2^(r-1) + out_zp * 2^r.
 * With act_min >= out_zp and the full int8 range ("plain" case of every ReLU layer with out_zp = -128) the
 * sign correction can only move an output that clamps to act_min anyway, so it is left out.
 * Per channel, a block of TE_DW_BLOCK words: M, rz, r, 2*bias, W01 and W12 of kernel rows 0, 1, 2 (the order
 * the assembly passes load them in).  Speed mode links them from flash (codegen_pack.pack_dwconv); size mode
 * builds them per group of four channels from the int8 weights. */
#define TE_DW_BLOCK 10
#define TE_DW_MAGIC 0x32574454   /* "TDW2" in memory */
#define TE_DW_HEADER 4           /* MAGIC, out_c, general requantization, transposed */

/* Widened lines of a group of four channels: per channel a plane of as many lines as fit (`words` words each,
 * the last lines of one strip of output lines carried to the top for the next).  Five lines of the widest: a
 * plane of three would carry two lines for every output line of a 48-wide map. */
#define TE_DW_PLANE (5 * TE_DW_RING_W / 2)   /* words per channel plane */
static uint32_t te_dw_buf[4 * TE_DW_PLANE];

/* The layer seen along its lines: a line is an image row (in_line = in_w * C, in_px = C) or, transposed, an
 * image column (in_line = C, in_px = in_w * C); the same for the output. */
typedef struct {
    int lines_in, len_in, lines_out, len_out, s_line, s_len, pad_line, pad_len;
    int in_line, in_px, out_line, out_px;
} dw_view_t;

/* Transposed when the map is taller than wide and its columns fit the planes: te_kernels.h, mirrored by
 * codegen_pack.dw_transposed. */
static int dw_words(int len_out, int stride) { return ((len_out - 1) * stride + 4 + 1) / 2; }

static int dw_transposed(const te_conv_params_t *p)
{
    return p->out_h > p->out_w && 2 * dw_words(p->out_h, p->stride_h) <= TE_DW_RING_W;
}

static dw_view_t dw_view(const te_conv_params_t *p, int transposed)
{
    const int C = p->in_c;
    dw_view_t v;
    if (transposed) {
        v = (dw_view_t){p->in_w, p->in_h, p->out_w, p->out_h, p->stride_w, p->stride_h, p->pad_left, p->pad_top,
                        C, p->in_w * C, C, p->out_w * C};
    } else {
        v = (dw_view_t){p->in_h, p->in_w, p->out_h, p->out_w, p->stride_h, p->stride_w, p->pad_top, p->pad_left,
                        p->in_w * C, C, p->out_w * C, C};
    }
    return v;
}

static inline uint32_t dw_pixel(const int8_t *line, int ix, const dw_view_t *v, int n, uint32_t zp4)
{
    if (ix < 0 || ix >= v->len_in) return zp4;
    if (n == 4) return te_read32(line + ix * v->in_px);
    uint32_t w = zp4;
    for (int k = 0; k < n; ++k) w = (w & ~(0xFFu << (8 * k))) | (uint32_t)(uint8_t)line[ix * v->in_px + k] << (8 * k);
    return w;
}

static inline void dw_widen_pair(uint32_t *q, int j, uint32_t a, uint32_t b)
{
    const uint32_t lo = te_pkhbt16(a, b), hi = te_pkhtb16(a, b);
    q[j] = (uint32_t)te_sxtb16(lo);
    q[TE_DW_PLANE + j] = (uint32_t)te_sxtb16_ror8(lo);
    q[2 * TE_DW_PLANE + j] = (uint32_t)te_sxtb16(hi);
    q[3 * TE_DW_PLANE + j] = (uint32_t)te_sxtb16_ror8(hi);
}

/* Where a line's pairs (positions 2j - pad_len, 2j + 1 - pad_len) lie, computed once per layer: [0, j_in) and
 * [j_out, words) hold only padding (written once per call, dw_fill_borders), [j_in, j_main) and [j_end, j_out)
 * mix padding and image, [j_main, j_end) is all image. */
typedef struct {
    int words, j_in, j_main, j_end, j_out;
    uint32_t zp4, zz;
} dw_plan_t;

static int dw_clampi(int v, int lo, int hi) { return v < lo ? lo : (v > hi ? hi : v); }

static dw_plan_t dw_plan(const dw_view_t *v, int words, int8_t in_zp)
{
    const int pad = v->pad_len, len = v->len_in;
    dw_plan_t pl;
    pl.words = words;
    pl.j_in = dw_clampi(pad / 2, 0, words);
    pl.j_main = dw_clampi((pad + 1) / 2, pl.j_in, words);
    pl.j_end = dw_clampi((len + pad) / 2, 0, words);
    pl.j_out = dw_clampi((len + pad + 1) / 2, pl.j_in, words);
    if (pl.j_end < pl.j_main) pl.j_main = pl.j_end = pl.j_in;   /* tiny lines: every pair is mixed */
    pl.zp4 = (uint32_t)(uint8_t)in_zp * 0x01010101u;
    pl.zz = (uint32_t)te_sxtb16(pl.zp4);
    return pl;
}

/* The padding-only pairs of every line slot of the four planes. */
static void dw_fill_borders(const dw_plan_t *pl, int slots)
{
    for (int t = 0; t < slots; ++t) {
        uint32_t *q = te_dw_buf + t * pl->words;
        for (int j = 0; j < pl->j_in; ++j)
            q[j] = q[TE_DW_PLANE + j] = q[2 * TE_DW_PLANE + j] = q[3 * TE_DW_PLANE + j] = pl->zz;
        for (int j = pl->j_out; j < pl->words; ++j)
            q[j] = q[TE_DW_PLANE + j] = q[2 * TE_DW_PLANE + j] = q[3 * TE_DW_PLANE + j] = pl->zz;
    }
}

static void dw_mixed_pairs(uint32_t *plane, const int8_t *line, const dw_view_t *v, int n, uint32_t zp4, int j0,
                           int j1)
{
    for (int j = j0; j < j1; ++j)
        dw_widen_pair(plane, j, dw_pixel(line, 2 * j - v->pad_len, v, n, zp4),
                      dw_pixel(line, 2 * j + 1 - v->pad_len, v, n, zp4));
}

/* The same for four channels (whole words), one bound test per position. */
__attribute__((noinline)) static void dw_mixed_pairs4(uint32_t *plane, const int8_t *line, const dw_view_t *v, uint32_t zp4, int j0,
                                   int j1)
{
    const uint32_t len = (uint32_t)v->len_in;
    const int step = v->in_px;
    for (int j = j0; j < j1; ++j) {
        const int ia = 2 * j - v->pad_len, ib = ia + 1;
        const uint32_t a = (uint32_t)ia < len ? te_read32(line + ia * step) : zp4;
        const uint32_t b = (uint32_t)ib < len ? te_read32(line + ib * step) : zp4;
        dw_widen_pair(plane, j, a, b);
    }
}

/* Input line iy, channels c .. c+n-1, into the line of plane 0 at `plane` (the other planes follow at
 * TE_DW_PLANE words): position ix at halfword ix + pad_len; pairs [j_in, j_out) only (dw_plan_t).  A line
 * outside the image is written only when `zp_lines` (its slot may hold an image line). */
static void dw_widen_line(uint32_t *plane, const dw_view_t *v, const dw_plan_t *pl, const int8_t *in, int iy, int c,
                          int n, int zp_lines)
{
    if (iy < 0 || iy >= v->lines_in) {
        if (zp_lines)
            for (int j = pl->j_in; j < pl->j_out; ++j)
                plane[j] = plane[TE_DW_PLANE + j] = plane[2 * TE_DW_PLANE + j] = plane[3 * TE_DW_PLANE + j] = pl->zz;
        return;
    }
    const int8_t *line = in + iy * v->in_line + c;
    if (n != 4) {
        dw_mixed_pairs(plane, line, v, n, pl->zp4, pl->j_in, pl->j_out);
        return;
    }
    dw_mixed_pairs4(plane, line, v, pl->zp4, pl->j_in, pl->j_main);
    const int step = v->in_px;
    const int8_t *px = line + (2 * pl->j_main - v->pad_len) * step;
    uint32_t *d = plane + pl->j_main, *const e = plane + pl->j_end;
    for (; d + 1 < e; d += 2, px += 4 * step) {   /* two pairs a turn: the loop costs half as much */
        dw_widen_pair(d, 0, te_read32(px), te_read32(px + step));
        dw_widen_pair(d, 1, te_read32(px + 2 * step), te_read32(px + 3 * step));
    }
    if (d < e) dw_widen_pair(d, 0, te_read32(px), te_read32(px + step));
    dw_mixed_pairs4(plane, line, v, pl->zp4, pl->j_end, pl->j_out);
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

/* Block words (te_dwconv_asm.h loads them in this order). */
enum { DW_M, DW_RZ, DW_R, DW_B2, DW_W };

/* One output of a kernel row (any stride): pair (x, x+1) and x+2. */
static inline int32_t dw_taps1(const uint32_t *q, int32_t u, int32_t v, int32_t a)
{
    return te_smlabt(q[1], v, te_smlad(q[0], u, a));
}

/* Outputs x, x+1 of stride 1 at the word of x (x even): words q[0], q[1] of each kernel row. */
static inline void dw_taps2_s1(const uint32_t *q, int32_t u, int32_t v, int32_t *a0, int32_t *a1)
{
    *a0 = te_smlabt(q[1], v, te_smlad(q[0], u, *a0));
    *a1 = te_smlatb(q[0], u, te_smlad(q[1], v, *a1));
}

/* One output line of one channel, as the assembly passes do it: four outputs per pass (stride 1 reads three
 * words per kernel row and moves two, stride 2 reads five and moves four), then two, then one. */
static void dw_line(const uint32_t *q, const int32_t *b, int8_t *o, const te_dw_geom_t *g, int stride, int general,
                    int32_t lo, int32_t hi)
{
    const int step = g->out_px, pitch = g->pitch / 4;
    const uint32_t *end = q + g->run / 4;
    for (; q < end; q += 2 * stride, o += 4 * step) {
        int32_t a[4] = {b[DW_B2], b[DW_B2], b[DW_B2], b[DW_B2]};
        for (int k = 0; k < 3; ++k) {
            const uint32_t *r = q + k * pitch;
            const int32_t u = b[DW_W + 2 * k], v = b[DW_W + 2 * k + 1];
            if (stride == 1) {
                dw_taps2_s1(r, u, v, &a[0], &a[1]);
                dw_taps2_s1(r + 1, u, v, &a[2], &a[3]);
            } else {
                for (int i = 0; i < 4; ++i) a[i] = dw_taps1(r + i, u, v, a[i]);
            }
        }
        for (int i = 0; i < 4; ++i) o[i * step] = dw_requant(a[i], b[DW_M], b[DW_RZ], b[DW_R], general, lo, hi);
    }
    if (g->tail & 2) {
        int32_t a0 = b[DW_B2], a1 = b[DW_B2];
        for (int k = 0; k < 3; ++k) {
            const uint32_t *r = q + k * pitch;
            const int32_t u = b[DW_W + 2 * k], v = b[DW_W + 2 * k + 1];
            if (stride == 1) {
                dw_taps2_s1(r, u, v, &a0, &a1);
            } else {
                a0 = dw_taps1(r, u, v, a0);
                a1 = dw_taps1(r + 1, u, v, a1);
            }
        }
        o[0] = dw_requant(a0, b[DW_M], b[DW_RZ], b[DW_R], general, lo, hi);
        o[step] = dw_requant(a1, b[DW_M], b[DW_RZ], b[DW_R], general, lo, hi);
        q += stride;
        o += 2 * step;
    }
    if (g->tail & 1) {   /* at an even position for both strides */
        int32_t a0 = b[DW_B2];
        for (int k = 0; k < 3; ++k) a0 = dw_taps1(q + k * pitch, b[DW_W + 2 * k], b[DW_W + 2 * k + 1], a0);
        o[0] = dw_requant(a0, b[DW_M], b[DW_RZ], b[DW_R], general, lo, hi);
    }
}

/* g->lines output lines of one channel: kernel row 0 of line i at q + i * q_step bytes. */
static void dw_lines(const uint32_t *q, int8_t *o, const int32_t *b, const te_dw_geom_t *g, int stride, int general,
                     int32_t lo, int32_t hi)
{
#if TE_DSP_NATIVE
    if (!general) {
        (stride == 1 ? te_dw_lines_s1 : te_dw_lines_s2)(q, o, b, g);
        return;
    }
#endif
    for (int i = 0; i < g->lines; ++i, q += g->q_step / 4, o += g->o_step)
        dw_line(q, b, o, g, stride, general, lo, hi);
}

static int dw_ring_shape_ok(const te_conv_params_t *p)
{
    return p->depth_mult == 1 && p->k_h == 3 && p->k_w == 3 && p->dil_h == 1 && p->dil_w == 1 &&
           (p->stride_w == 1 || p->stride_w == 2) && (p->stride_h == 1 || p->stride_h == 2) &&
           (2 * dw_words(p->out_w, p->stride_w) <= TE_DW_RING_W || dw_transposed(p));
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

/* The blocks of channels c .. c+n-1 from the plain arrays; `transposed`: kernel rows are the image columns. */
static void dw_plain_blocks(const te_conv_params_t *p, int c, int n, int transposed, int32_t *blk)
{
    const int C = p->out_c, tr = transposed ? 1 : 3, tc = transposed ? 3 : 1;
    for (int k = 0; k < n; ++k, blk += TE_DW_BLOCK) {
        const int ch = c + k, r = -p->shift[ch];
        const int8_t *w = p->w + ch;
        blk[DW_M] = p->mult[ch];
        blk[DW_RZ] = (int32_t)(((int64_t)1 << (r - 1)) + (int64_t)p->out_zp * ((int64_t)1 << r));
        blk[DW_R] = r;
        blk[DW_B2] = 2 * p->bias[ch];
        for (int ky = 0; ky < 3; ++ky) {
            const int32_t w0 = 2 * w[(tr * ky) * C], w1 = 2 * w[(tr * ky + tc) * C], w2 = 2 * w[(tr * ky + 2 * tc) * C];
            blk[DW_W + 2 * ky] = (int32_t)(((uint32_t)w0 & 0xFFFFu) | ((uint32_t)w1 << 16));
            blk[DW_W + 1 + 2 * ky] = (int32_t)(((uint32_t)w1 & 0xFFFFu) | ((uint32_t)w2 << 16));
        }
    }
}

/* blocks: the packed blocks of every channel (speed mode) or NULL (built here from the plain arrays).
 * When one strip covers the layer, every group of channels puts each input line in the same slot, so the lines
 * outside the image are written by the first group only, and nothing is carried between strips. */
static void dw_ring(const te_conv_params_t *p, const int8_t *in, int8_t *out, const int32_t *blocks, int general,
                    int transposed)
{
    const dw_view_t v = dw_view(p, transposed);
    const int C = p->in_c, sh = v.s_line, words = dw_words(v.len_out, v.s_len);
    const int cap = TE_DW_PLANE / words;                /* widened lines a plane holds (>= 3) */
    const int strip = (cap - 3) / sh + 1;               /* output lines per strip */
    const int one_strip = strip >= v.lines_out;
    const dw_plan_t pl = dw_plan(&v, words, p->in_zp);
    te_dw_geom_t g = {v.out_px, 4 * words, 4 * (v.len_out / 4) * 2 * v.s_len, v.len_out & 3, 0,
                      4 * sh * words, v.out_line};
    int32_t local[4 * TE_DW_BLOCK];
    dw_fill_borders(&pl, cap);
    for (int c = 0; c < C; c += 4) {
        const int n = C - c < 4 ? C - c : 4;
        const int32_t *blk = blocks ? blocks + c * TE_DW_BLOCK : local;
        const int zp_lines = !one_strip || c == 0;
        if (!blocks) dw_plain_blocks(p, c, n, transposed, local);
        int have = 0;   /* widened lines at the top of the planes, from input line y0 on */
        for (int oy = 0; oy < v.lines_out; oy += strip) {
            const int m = v.lines_out - oy < strip ? v.lines_out - oy : strip;
            const int y0 = oy * sh - v.pad_line, need = (m - 1) * sh + 3;
            for (int t = have; t < need; ++t)
                dw_widen_line(te_dw_buf + t * words, &v, &pl, in, y0 + t, c, n, zp_lines);
            g.lines = m;
            for (int k = 0; k < n; ++k)
                dw_lines(te_dw_buf + k * TE_DW_PLANE, out + oy * v.out_line + c + k, blk + k * TE_DW_BLOCK, &g,
                         v.s_len, general, p->act_min, p->act_max);
            have = need - m * sh;   /* lines the next strip starts with: move them up */
            if (have > 0 && oy + m < v.lines_out)
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
        if (words[0] != TE_DW_MAGIC || words[1] != p->out_c || !dw_ring_shape_ok(p) || words[3] != dw_transposed(p))
            __builtin_trap();   /* a header that disagrees with the layer: generator and kernel out of step */
        dw_ring(p, in, out, words + TE_DW_HEADER, words[2], words[3]);
        return;
    }
    if (dw_plain_ok(p)) {
        dw_ring(p, in, out, 0, dw_general(p), dw_transposed(p));
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
