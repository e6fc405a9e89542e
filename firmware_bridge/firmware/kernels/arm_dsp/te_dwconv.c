/* DEPTHWISE_CONV_2D, per-channel int8, for cores with the DSP extension.
 * Multiplier 1 (every MLPerf Tiny network): four channels at a time, one
 * word of input and one of weights per tap widened with SXTB16 and
 * accumulated with SMLABB/SMLATT into four channel sums; interior 3x3
 * windows are unrolled without bounds tests, taps outside the image read
 * the input zero point (the folded bias expects it).  Other multipliers and
 * a channel tail take the per-channel path (two taps per SMLAD). */
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

/* 3x3, stride any, dilation 1, fast requantization: one group of four channels at a time over
 * the whole map, so its widened weights, biases and requantization constants are loaded once
 * (kept in registers or on the stack) instead of once per pixel.  Border pixels take the
 * general per-tap path of the same group. */
static void group_outer_3x3(const te_conv_params_t *p, const int8_t *in, int8_t *out, int c)
{
    const int C = p->in_c, C2 = 2 * C, row = p->in_w * C;
    const int in_h = p->in_h, in_w = p->in_w, out_h = p->out_h, out_w = p->out_w;
    const int stride_h = p->stride_h, stride_w = p->stride_w, pad_top = p->pad_top, pad_left = p->pad_left;
    const uint32_t zp4 = (uint32_t)(uint8_t)p->in_zp * 0x01010101u;
    int32_t we[9], wo[9];
    for (int t = 0; t < 9; ++t) {
        const uint32_t wv = te_read32(p->w + t * C + c);
        we[t] = te_sxtb16(wv);
        wo[t] = te_sxtb16_ror8(wv);
    }
    const int32_t b0 = p->bias[c], b1 = p->bias[c + 1], b2 = p->bias[c + 2], b3 = p->bias[c + 3];
    const int32_t m0 = p->mult[c], m1 = p->mult[c + 1], m2 = p->mult[c + 2], m3 = p->mult[c + 3];
    const int32_t r0 = -p->shift[c], r1 = -p->shift[c + 1], r2 = -p->shift[c + 2], r3 = -p->shift[c + 3];
    const int32_t zp = p->out_zp, lo = p->act_min, hi = p->act_max;
    int8_t *o = out + c;
    for (int oy = 0; oy < out_h; ++oy) {
        const int y0 = oy * stride_h - pad_top;
        const int rows_in = y0 >= 0 && y0 + 2 < in_h;
        for (int ox = 0; ox < out_w; ++ox, o += C) {
            const int x0 = ox * stride_w - pad_left;
            int32_t a0 = b0, a1 = b1, a2 = b2, a3 = b3;
            if (rows_in && x0 >= 0 && x0 + 2 < in_w) {
                const int8_t *i0 = in + (y0 * in_w + x0) * C + c;
                for (int ky = 0; ky < 3; ++ky, i0 += row) {
                    const int32_t *e = we + 3 * ky, *d = wo + 3 * ky;
                    uint32_t v = te_read32(i0);
                    int32_t xe = te_sxtb16(v), xo = te_sxtb16_ror8(v);
                    a0 = te_smlabb(xe, e[0], a0); a2 = te_smlatt(xe, e[0], a2);
                    a1 = te_smlabb(xo, d[0], a1); a3 = te_smlatt(xo, d[0], a3);
                    v = te_read32(i0 + C);
                    xe = te_sxtb16(v); xo = te_sxtb16_ror8(v);
                    a0 = te_smlabb(xe, e[1], a0); a2 = te_smlatt(xe, e[1], a2);
                    a1 = te_smlabb(xo, d[1], a1); a3 = te_smlatt(xo, d[1], a3);
                    v = te_read32(i0 + C2);
                    xe = te_sxtb16(v); xo = te_sxtb16_ror8(v);
                    a0 = te_smlabb(xe, e[2], a0); a2 = te_smlatt(xe, e[2], a2);
                    a1 = te_smlabb(xo, d[2], a1); a3 = te_smlatt(xo, d[2], a3);
                }
            } else {
                for (int ky = 0; ky < 3; ++ky) {
                    const int iy = y0 + ky;
                    for (int kx = 0; kx < 3; ++kx) {
                        const int ix = x0 + kx;
                        const uint32_t v = (iy >= 0 && iy < in_h && ix >= 0 && ix < in_w)
                                           ? te_read32(in + (iy * in_w + ix) * C + c) : zp4;
                        const int32_t xe = te_sxtb16(v), xo = te_sxtb16_ror8(v);
                        const int t = 3 * ky + kx;
                        a0 = te_smlabb(xe, we[t], a0); a2 = te_smlatt(xe, we[t], a2);
                        a1 = te_smlabb(xo, wo[t], a1); a3 = te_smlatt(xo, wo[t], a3);
                    }
                }
            }
            int32_t y;
            y = te_requant_fast(a0, m0, r0, 1 << (r0 - 1)) + zp; o[0] = (int8_t)(y < lo ? lo : (y > hi ? hi : y));
            y = te_requant_fast(a1, m1, r1, 1 << (r1 - 1)) + zp; o[1] = (int8_t)(y < lo ? lo : (y > hi ? hi : y));
            y = te_requant_fast(a2, m2, r2, 1 << (r2 - 1)) + zp; o[2] = (int8_t)(y < lo ? lo : (y > hi ? hi : y));
            y = te_requant_fast(a3, m3, r3, 1 << (r3 - 1)) + zp; o[3] = (int8_t)(y < lo ? lo : (y > hi ? hi : y));
        }
    }
}

void te_dwconv_s8(const te_conv_params_t *p, const int8_t *in, int8_t *out)
{
    if (p->depth_mult == 1 && p->in_c >= 4 && p->k_h == 3 && p->k_w == 3 && p->dil_h == 1 && p->dil_w == 1 &&
        fast_ok(p)) {
        const int C4 = p->in_c & ~3;
        for (int c = 0; c < C4; c += 4) group_outer_3x3(p, in, out, c);
        for (int oy = 0; oy < p->out_h; ++oy) {
            for (int ox = 0; ox < p->out_w; ++ox) {
                const int y0 = oy * p->stride_h - p->pad_top, x0 = ox * p->stride_w - p->pad_left;
                int8_t *o = out + (oy * p->out_w + ox) * p->out_c;
                for (int c = C4; c < p->in_c; ++c)
                    o[c] = te_requant(tap_sum(p, in, y0, x0, c, c), p->mult[c], p->shift[c], p->out_zp,
                                      p->act_min, p->act_max);
            }
        }
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
