/* CONV_2D with weights packed on the host (export/codegen_pack.py); included by te_conv.c only.
 *
 * The generated code selects this layout in arm_dsp builds and marks it with
 * mult == shift == NULL: `w` then points at int32 words [MAGIC, K, out_c,
 * groups, mode, scratch, pairs, constants, then per computed channel pair and
 * group of 4 taps: c0 (2w0,2w2), c0 (2w1,2w3), c1 (2w0,2w2), c1 (2w1,2w3) as
 * int16 pairs], and `bias` at 10 words per computed pair [2*b0, 2*b1, M0,
 * rz0, r0, o0, M1, rz1, r1, o1] (o: the channel's byte offset in a pixel's
 * output), then one word per constant channel, o | value << 16.  Channels
 * whose weights are all zero (pruned) are not computed: their output is a
 * constant the host knows, stored per pixel pair (te_conv_consts).  Per group
 * the inner loop is one LDM of columns (te_conv_cols.h), one LDM of weights
 * and 8 SMLAD: 10 instructions for 16 multiply-accumulates.  The accumulators
 * hold 2*acc, so requantization is SMMLAR + 4 instructions (exactness:
 * codegen_pack.py, which only packs layers it proves in range).
 *
 * Header words 4 and 5: the column mode and the scratch it needs.  Mode 0
 * unrolls each pixel from the int8 input (te_conv_cols.h); scratch: the
 * columns (4*Kp bytes) and, when C is not a multiple of 4, Kp + 4 bytes to
 * gather one column.  Mode 1 (C a multiple of 4, no dilation) keeps a ring of
 * k_h input rows widened once each, zero-point padded to Wp = (out_w - 1) *
 * stride_w + k_w pixels, and builds a pixel pair's columns with LDM/STM
 * copies; scratch: the columns, then k_h * Wp * C * 2 bytes of rows.  Mode 2
 * (C not a multiple of 4, no dilation: the stems) gathers each pixel's K
 * taps with whole unaligned words from a zero-point-padded int8 copy of the
 * input (Hp = (out_h - 1) * stride_h + k_h rows of Wp pixels), never testing
 * bounds; scratch: the columns, Kp + 4 bytes to gather, then
 * round4(Hp * Wp * C) + 4 bytes for the copy (a window's last word may read
 * 3 bytes past it, which meet zero weights).  Whatever the mode, a 1x1 layer
 * without padding (C a multiple of 4: every pointwise layer) builds a pixel
 * pair's columns straight from its two input pixels (te_cols_pair), using
 * the first 4*Kp bytes of scratch only. */
#ifndef TE_CONV_PACKED_H
#define TE_CONV_PACKED_H

#include <stdint.h>

#include "te_conv_cols.h"
#include "te_dsp.h"
#include "te_kernels.h"

#define TE_PACK_MAGIC 0x324B5054
#define TE_PACK_HEADER 8
#define TE_RING_MAX 8   /* kernel rows a mode-1 layer may have (codegen_pack.ROWBUF_MAX_K_H) */

/* Computed channel pairs 0..pairs-1 (>= 1) of two pixels: accumulate `groups`
 * groups from the columns, requantize, store each channel of pixel 0 at
 * out0 + o and of pixel 1 at out1 + o (out1 == out0 is allowed).
 * te_conv_packed_pairs_relu leaves out the sign correction (acc < 0): exact
 * when act_min >= out_zp, since then every acc < 0 ends at act_min either
 * way (SMMLAR of a negative product is <= 0, so the uncorrected quotient is
 * <= 0 as well: both clamp to act_min after adding out_zp). */
void te_conv_packed_pairs(const int32_t *cols, const int32_t *w, const int32_t *rq, int8_t *out0, int8_t *out1,
                          int groups, int pairs);
void te_conv_packed_pairs_relu(const int32_t *cols, const int32_t *w, const int32_t *rq, int8_t *out0,
                               int8_t *out1, int groups, int pairs);

#if TE_DSP_NATIVE
#define TE_PGROUP \
    "  ldmia.w r0!, {r6-r9}\n" \
    "  ldmia.w r1!, {r10, r11, r12, lr}\n" \
    "  smlad r2, r10, r6, r2\n" \
    "  smlad r2, r11, r7, r2\n" \
    "  smlad r3, r10, r8, r3\n" \
    "  smlad r3, r11, r9, r3\n" \
    "  smlad r4, r12, r6, r4\n" \
    "  smlad r4, lr, r7, r4\n" \
    "  smlad r5, r12, r8, r5\n" \
    "  smlad r5, lr, r9, r5\n"
#define TE_PGROUP4 TE_PGROUP TE_PGROUP TE_PGROUP TE_PGROUP
#define TE_PREQ(ACC, OUT) \
    "  smmlar r9, " ACC ", r6, r7\n" \
    "  sub.w r9, r9, " ACC ", lsr #31\n" \
    "  asr.w r9, r9, r8\n" \
    "  ssat r9, #8, r9\n" \
    "  strb r9, [" OUT ", lr]\n"
#define TE_PREQ_RELU(ACC, OUT) \
    "  smmlar r9, " ACC ", r6, r7\n" \
    "  asr.w r9, r9, r8\n" \
    "  ssat r9, #8, r9\n" \
    "  strb r9, [" OUT ", lr]\n"

/* Every register holds loop state, so the loop bounds live on the stack: [sp]
 * columns, [sp+4] entry address, [sp+8] end of the columns, [sp+16] rq,
 * [sp+20] out0, [sp+24] out1, [sp+28] end of rq; the caller's stacked
 * arguments start at [sp+72].  Groups run in chunks of 16 unrolled (40 bytes
 * each, all 32-bit encodings: a 64-channel pointwise layer is one chunk); the
 * first chunk of a pair is entered part-way so that it runs groups % 16 of
 * them.  The pair loop is tested at its bottom. */
#define TE_PAIRS_FN(NAME, RQ) \
    "  .text\n  .syntax unified\n  .thumb\n  .align 2\n" \
    "  .global " NAME "\n  .type " NAME ", %function\n  .thumb_func\n" \
    NAME ":\n" \
    "  push {r4-r11, lr}\n" \
    "  sub sp, sp, #36\n" \
    "  str r0, [sp]\n" \
    "  str r3, [sp, #20]\n" \
    "  ldr r4, [sp, #72]\n" \
    "  str r4, [sp, #24]\n" \
    "  ldr r4, [sp, #76]\n" \
    "  add r5, r0, r4, lsl #4\n" \
    "  str r5, [sp, #8]\n" \
    "  ldr r5, [sp, #80]\n" \
    "  add r5, r5, r5, lsl #2\n" \
    "  add r5, r2, r5, lsl #3\n" \
    "  str r5, [sp, #28]\n" \
    "  rsbs r4, r4, #0\n" \
    "  and r4, r4, #15\n" \
    "  add r4, r4, r4, lsl #2\n" \
    "  lsls r4, r4, #3\n" \
    "  adr.w r5, 3f\n" \
    "  add r5, r5, r4\n" \
    "  orr r5, r5, #1\n" \
    "  str r5, [sp, #4]\n" \
    "  mov ip, r2\n" \
    "1:\n" \
    "  ldmia ip!, {r2, r4}\n" \
    "  str ip, [sp, #16]\n" \
    "  mov r3, r2\n" \
    "  mov r5, r4\n" \
    "  ldrd r0, ip, [sp]\n" \
    "  bx ip\n" \
    "3:\n" \
    TE_PGROUP4 TE_PGROUP4 TE_PGROUP4 TE_PGROUP4 \
    "  ldr ip, [sp, #8]\n" \
    "  cmp r0, ip\n" \
    "  bne 3b\n" \
    "  ldr ip, [sp, #16]\n" \
    "  ldrd r10, r11, [sp, #20]\n" \
    "  ldmia ip!, {r6, r7, r8, lr}\n" \
    RQ("r2", "r10") RQ("r3", "r11") \
    "  ldmia ip!, {r6, r7, r8, lr}\n" \
    RQ("r4", "r10") RQ("r5", "r11") \
    "  ldr lr, [sp, #28]\n" \
    "  cmp ip, lr\n" \
    "  bne 1b\n" \
    "  add sp, sp, #36\n" \
    "  pop {r4-r11, pc}\n" \
    "  .size " NAME ", .-" NAME "\n"

__asm__(TE_PAIRS_FN("te_conv_packed_pairs", TE_PREQ) TE_PAIRS_FN("te_conv_packed_pairs_relu", TE_PREQ_RELU));
#undef TE_PAIRS_FN
#undef TE_PGROUP4
#undef TE_PGROUP
#undef TE_PREQ
#undef TE_PREQ_RELU
#else
static inline int8_t te_packed_requant(int32_t acc2, const int32_t *q, int relu)
{
    const int32_t t = te_smmlar(acc2, q[0], q[1]) - (relu ? 0 : (int32_t)((uint32_t)acc2 >> 31));
    return (int8_t)te_ssat8(t >> q[2]);
}

static void te_pairs_c(const int32_t *cols, const int32_t *w, const int32_t *rq, int8_t *out0, int8_t *out1,
                       int groups, int pairs, int relu)
{
    for (int pr = 0; pr < pairs; ++pr, rq += 10) {
        int32_t a00 = rq[0], a01 = rq[0], a10 = rq[1], a11 = rq[1];
        const int32_t *x = cols;
        for (int g = 0; g < groups; ++g, x += 4, w += 4) {
            a00 = te_smlad(w[1], x[1], te_smlad(w[0], x[0], a00));
            a01 = te_smlad(w[1], x[3], te_smlad(w[0], x[2], a01));
            a10 = te_smlad(w[3], x[1], te_smlad(w[2], x[0], a10));
            a11 = te_smlad(w[3], x[3], te_smlad(w[2], x[2], a11));
        }
        out0[rq[5]] = te_packed_requant(a00, rq + 2, relu);
        out1[rq[5]] = te_packed_requant(a01, rq + 2, relu);
        out0[rq[9]] = te_packed_requant(a10, rq + 6, relu);
        out1[rq[9]] = te_packed_requant(a11, rq + 6, relu);
    }
}

void te_conv_packed_pairs(const int32_t *cols, const int32_t *w, const int32_t *rq, int8_t *out0, int8_t *out1,
                          int groups, int pairs)
{
    te_pairs_c(cols, w, rq, out0, out1, groups, pairs, 0);
}

void te_conv_packed_pairs_relu(const int32_t *cols, const int32_t *w, const int32_t *rq, int8_t *out0,
                               int8_t *out1, int groups, int pairs)
{
    te_pairs_c(cols, w, rq, out0, out1, groups, pairs, 1);
}
#endif

/* Which pair kernel a layer takes: without the sign correction when act_min >= out_zp. */
typedef void (*te_pairs_fn)(const int32_t *, const int32_t *, const int32_t *, int8_t *, int8_t *, int, int);

static inline te_pairs_fn te_pairs_for(const te_conv_params_t *p)
{
    return p->act_min >= p->out_zp ? te_conv_packed_pairs_relu : te_conv_packed_pairs;
}

/* One pixel pair from its columns: the computed pairs (header word 6), then
 * the constant channels (word 7) listed after them in rq. */
__attribute__((always_inline)) static inline void te_packed_pixels(te_pairs_fn pairs_fn, const int32_t *cols,
                                                                   const int32_t *blob, const int32_t *rq,
                                                                   int8_t *out0, int8_t *out1, int groups)
{
    const int pairs = blob[6];
    if (pairs) pairs_fn(cols, blob + TE_PACK_HEADER, rq, out0, out1, groups, pairs);
    if (__builtin_expect(blob[7] != 0, 0)) {
        for (const int32_t *c = rq + 10 * pairs, *end = c + blob[7]; c < end; ++c) {
            const int o = *c & 0xFFFF;
            out0[o] = out1[o] = (int8_t)(*c >> 16);
        }
    }
}

/* Two pixels' kernel-row runs (each `groups` x 2 words) -> `groups` column groups. */
#if TE_DSP_NATIVE
void te_interleave(const int32_t *a, const int32_t *b, int32_t *dst, int groups);
__asm__(
    "  .text\n  .syntax unified\n  .thumb\n  .align 2\n"
    "  .global te_interleave\n  .type te_interleave, %function\n  .thumb_func\n"
    "te_interleave:\n"
    "  push {r4-r11}\n"
    "  subs r3, r3, #2\n"
    "  blt 2f\n"
    "1:\n"
    "  ldmia r0!, {r4, r5, r8, r9}\n"
    "  ldmia r1!, {r6, r7, r10, r11}\n"
    "  stmia r2!, {r4-r11}\n"
    "  subs r3, r3, #2\n"
    "  bge 1b\n"
    "2:\n"
    "  adds r3, r3, #2\n"
    "  beq 3f\n"
    "  ldmia r0!, {r4, r5}\n"
    "  ldmia r1!, {r6, r7}\n"
    "  stmia r2!, {r4-r7}\n"
    "3:\n"
    "  pop {r4-r11}\n"
    "  bx lr\n"
    "  .size te_interleave, .-te_interleave\n");
#else
static void te_interleave(const int32_t *a, const int32_t *b, int32_t *dst, int groups)
{
    for (; groups > 0; --groups, a += 2, b += 2, dst += 4) {
        dst[0] = a[0];
        dst[1] = a[1];
        dst[2] = b[0];
        dst[3] = b[1];
    }
}
#endif

/* 1x1 without padding: a pixel pair's columns straight from the int8 input.
 * `groups` words of pixel a and of pixel b (both word-aligned: C is a
 * multiple of 4 and activations are 8-byte aligned) -> `groups` column
 * groups [a (x0,x2), a (x1,x3), b (x0,x2), b (x1,x3)]: two groups per
 * 14 instructions, no int16 row in between. */
#if TE_DSP_NATIVE
void te_cols_pair(const int8_t *a, const int8_t *b, int32_t *dst, int groups);
#define TE_COLS1(A, B) \
    "  sxtb16 r8, " A "\n" \
    "  sxtb16 r9, " A ", ror #8\n" \
    "  sxtb16 r10, " B "\n" \
    "  sxtb16 r11, " B ", ror #8\n" \
    "  stmia r2!, {r8-r11}\n"
__asm__(
    "  .text\n  .syntax unified\n  .thumb\n  .align 2\n"
    "  .global te_cols_pair\n  .type te_cols_pair, %function\n  .thumb_func\n"
    "te_cols_pair:\n"
    "  push {r4-r11}\n"
    "  subs r3, r3, #2\n"
    "  blt 2f\n"
    "1:\n"
    "  ldrd r4, r5, [r0], #8\n"
    "  ldrd r6, r7, [r1], #8\n"
    TE_COLS1("r4", "r6") TE_COLS1("r5", "r7")
    "  subs r3, r3, #2\n"
    "  bge 1b\n"
    "2:\n"
    "  adds r3, r3, #2\n"
    "  beq 3f\n"
    "  ldr r4, [r0]\n"
    "  ldr r6, [r1]\n"
    TE_COLS1("r4", "r6")
    "3:\n"
    "  pop {r4-r11}\n"
    "  bx lr\n"
    "  .size te_cols_pair, .-te_cols_pair\n");
#undef TE_COLS1
#else
static void te_cols_pair(const int8_t *a, const int8_t *b, int32_t *dst, int groups)
{
    for (int g = 0; g < groups; ++g, a += 4, b += 4, dst += 4) {
        const uint32_t u = te_read32(a), v = te_read32(b);
        dst[0] = te_sxtb16(u);
        dst[1] = te_sxtb16_ror8(u);
        dst[2] = te_sxtb16(v);
        dst[3] = te_sxtb16_ror8(v);
    }
}
#endif

static int te_is_1x1_flat(const te_conv_params_t *p)
{
    return p->k_h == 1 && p->k_w == 1 && (p->in_c & 3) == 0 && p->pad_top == 0 && p->pad_left == 0;
}

/* Mode 0, 1x1 without padding (pointwise layers, strided or not): pixel q's
 * window is its C input bytes, found by stepping along the output rows. */
static void te_conv_packed_1x1(const te_conv_params_t *p, const int8_t *in, int8_t *out, int32_t *cols,
                               const int32_t *blob, te_pairs_fn pairs_fn)
{
    const int c = p->in_c, oc = p->out_c, groups = c >> 2, out_w = p->out_w, n_pix = p->out_h * out_w;
    const int sx = p->stride_w * c, sy = p->stride_h * p->in_w * c;
    const int8_t *row = in, *a = in;
    int ox = 0;
    int8_t *o = out;
    for (int pix = 0; pix < n_pix; pix += 2, o += 2 * oc) {
        const int two = pix + 1 < n_pix;
        const int8_t *b = a;
        if (two) {
            if (++ox == out_w) {
                ox = 0;
                row += sy;
                b = row;
            } else {
                b = a + sx;
            }
        }
        te_cols_pair(a, b, cols, groups);
        te_packed_pixels(pairs_fn, cols, blob, p->bias, o, two ? o + oc : o, groups);
        if (two && pix + 2 < n_pix) {
            if (++ox == out_w) {
                ox = 0;
                row += sy;
                a = row;
            } else {
                a = b + sx;
            }
        }
    }
}

/* Input row iy, pixels -pad_left .. -pad_left + wp - 1, widened to (x0,x2),(x1,x3) word pairs. */
static void te_widen_row(const te_conv_params_t *p, const int8_t *in, int iy, int wp, int32_t *dst, int32_t zlo,
                         int32_t zhi)
{
    const int c = p->in_c, x_start = -p->pad_left;
    if (iy < 0 || iy >= p->in_h) {
        for (int i = 0; i < (wp * c) >> 2; ++i, dst += 2) { dst[0] = zlo; dst[1] = zhi; }
        return;
    }
    int left = x_start < 0 ? -x_start : 0, right = x_start + wp - p->in_w;
    if (left > wp) left = wp;
    if (right < 0) right = 0;
    if (right > wp - left) right = wp - left;
    for (int i = 0; i < (left * c) >> 2; ++i, dst += 2) { dst[0] = zlo; dst[1] = zhi; }
    const int8_t *src = in + (iy * p->in_w + x_start + left) * c;
    for (int i = 0; i < ((wp - left - right) * c) >> 2; ++i, src += 4, dst += 2) {
        const uint32_t v = te_read32(src);
        dst[0] = te_sxtb16(v);
        dst[1] = te_sxtb16_ror8(v);
    }
    for (int i = 0; i < (right * c) >> 2; ++i, dst += 2) { dst[0] = zlo; dst[1] = zhi; }
}

static void te_conv_packed_rows(const te_conv_params_t *p, const int8_t *in, int8_t *out, int32_t *cols, int kp,
                                const int32_t *w)
{
    const int c = p->in_c, oc = p->out_c, wp = (p->out_w - 1) * p->stride_w + p->k_w;
    const int row_words = (wp * c) >> 1, pix_words = (p->stride_w * c) >> 1, run = (p->k_w * c) >> 2;
    const uint32_t zp4 = 0x01010101u * (uint8_t)p->in_zp;
    const int32_t zlo = te_sxtb16(zp4), zhi = te_sxtb16_ror8(zp4);
    int32_t *ring = cols + kp;
    int have[TE_RING_MAX];
    const int32_t *rows[TE_RING_MAX];
    for (int i = 0; i < p->k_h; ++i) have[i] = -1 - p->pad_top - p->k_h;  /* no input row */
    for (int oy = 0; oy < p->out_h; ++oy) {
        for (int ky = 0; ky < p->k_h; ++ky) {
            const int iy = oy * p->stride_h - p->pad_top + ky, slot = (iy + p->pad_top) % p->k_h;
            int32_t *row = ring + slot * row_words;
            if (have[slot] != iy) {
                te_widen_row(p, in, iy, wp, row, zlo, zhi);
                have[slot] = iy;
            }
            rows[ky] = row;
        }
        int8_t *o = out + oy * p->out_w * oc;
        for (int ox = 0; ox < p->out_w; ox += 2, o += 2 * oc) {
            const int two = ox + 1 < p->out_w;
            int32_t *dst = cols;
            for (int ky = 0; ky < p->k_h; ++ky, dst += 4 * run) {
                const int32_t *a = rows[ky] + ox * pix_words;
                te_interleave(a, two ? a + pix_words : a, dst, run);
            }
            te_packed_pixels(te_pairs_for(p), cols, w, p->bias, o, two ? o + oc : o, kp >> 2);
        }
    }
}

/* Mode 2, step 1: the zero-point-padded int8 copy of the input (hp rows of
 * wp pixels, then 4 spare bytes): zero point by words, then each image row
 * by unaligned words and its last bytes singly (a word there would
 * overwrite the right padding). */
static void te_pad_image(const te_conv_params_t *p, const int8_t *in, int8_t *img, int hp, int wp)
{
    const int c = p->in_c, row = wp * c;
    const uint32_t zp4 = 0x01010101u * (uint8_t)p->in_zp;
    uint32_t *z = (uint32_t *)(void *)img;
    for (int i = 0, n = ((hp * row + 3) >> 2) + 1; i < n; ++i) z[i] = zp4;
    const int n_in = (p->in_w + p->pad_left > wp ? wp - p->pad_left : p->in_w) * c, n4 = n_in & ~3;
    for (int iy = 0; iy < p->in_h && iy + p->pad_top < hp; ++iy) {
        const int8_t *src = in + iy * p->in_w * c;
        int8_t *dst = img + (iy + p->pad_top) * row + p->pad_left * c;
        int i = 0;
        for (; i < n4; i += 4) te_write32(dst + i, te_read32(src + i));
        for (; i < n_in; ++i) dst[i] = src[i];
    }
}

/* Mode 2, step 2: every pixel's window gathered from the padded copy into
 * `stage` as K contiguous taps (each kernel row's k_w*C bytes by unaligned
 * words; a row's last word spills into the next row's place, rewritten
 * next, and the last one past K, where weights are zero), then widened. */
static void te_conv_packed_padded(const te_conv_params_t *p, const int8_t *in, int8_t *out, int32_t *cols,
                                  int kp, const int32_t *w)
{
    const int c = p->in_c, oc = p->out_c, wp = (p->out_w - 1) * p->stride_w + p->k_w;
    const int hp = (p->out_h - 1) * p->stride_h + p->k_h, row = wp * c, run = p->k_w * c, rw = (run + 3) >> 2;
    int8_t *stage = (int8_t *)(cols + kp), *img = stage + kp + 4;
    te_pad_image(p, in, img, hp, wp);
    const int n_pix = p->out_h * p->out_w;
    for (int pix = 0; pix < n_pix; pix += 2) {
        const int two = pix + 1 < n_pix;
        for (int slot = 0; slot < 2; ++slot) {
            const int q = slot && two ? pix + 1 : pix, oy = q / p->out_w, ox = q % p->out_w;
            const int8_t *src = img + (oy * p->stride_h * wp + ox * p->stride_w) * c;
            int8_t *dst = stage;
            for (int ky = 0; ky < p->k_h; ++ky, src += row, dst += run)
                for (int j = 0; j < 4 * rw; j += 4) te_write32(dst + j, te_read32(src + j));
            te_widen_rows(stage, cols + 2 * slot, kp >> 2, 1, 0);
        }
        int8_t *o0 = out + pix * oc;
        te_packed_pixels(te_pairs_for(p), cols, w, p->bias, o0, two ? o0 + oc : o0, kp >> 2);
    }
}

/* A packed layer whose header disagrees with its params was generated for
 * another kernel version: stop rather than compute garbage.  Returns the
 * packed taps per channel. */
static int te_packed_check(const te_conv_params_t *p, const int32_t *blob, int k)
{
    const int c = p->in_c, mode = blob[4], flat = p->dil_h == 1 && p->dil_w == 1;
    const int wp = (p->out_w - 1) * p->stride_w + p->k_w, hp = (p->out_h - 1) * p->stride_h + p->k_h;
    const int kp = (k + 3) & ~3;
    int need = 4 * kp + ((c & 3) ? kp + 4 : 0), ok = mode == 0;
    if (mode == 1) {
        need = 4 * kp + 2 * p->k_h * wp * c;
        ok = (c & 3) == 0 && flat && p->k_h <= TE_RING_MAX;
    } else if (mode == 2) {
        need = 5 * kp + 4 + ((hp * wp * c + 3) & ~3) + 4;
        ok = flat;
    }
    if (blob[0] != TE_PACK_MAGIC || blob[1] != k || blob[2] != p->out_c || blob[3] != kp / 4 || !ok ||
        blob[5] != need || 2 * blob[6] + blob[7] != p->out_c)
        __builtin_trap();
    return kp;
}

static void te_conv_packed(const te_conv_params_t *p, const int8_t *in, int8_t *out, void *scratch)
{
    const int32_t *blob = (const int32_t *)(const void *)p->w;
    const int k = p->k_h * p->k_w * p->in_c, kp = te_packed_check(p, blob, k), groups = kp >> 2;
    const int n_pix = p->out_h * p->out_w, oc = p->out_c;
    int32_t *cols = (int32_t *)scratch;
    int8_t *stage = (int8_t *)(cols + kp);
    const te_pairs_fn pairs_fn = te_pairs_for(p);
    if (te_is_1x1_flat(p)) {   /* any mode: the direct columns beat the row ring for 1x1 */
        te_conv_packed_1x1(p, in, out, cols, blob, pairs_fn);
    } else if (blob[4] == 1) {
        te_conv_packed_rows(p, in, out, cols, kp, blob);
    } else if (blob[4] == 2) {
        te_conv_packed_padded(p, in, out, cols, kp, blob);
    } else {
        for (int pix = 0; pix < n_pix; pix += 2) {
            const int two = pix + 1 < n_pix;
            te_im2col(p, in, pix, 0, cols, stage, k, kp);
            te_im2col(p, in, two ? pix + 1 : pix, 1, cols, stage, k, kp); /* odd tail: twice, same bytes */
            int8_t *o0 = out + pix * oc;
            te_packed_pixels(pairs_fn, cols, blob, p->bias, o0, two ? o0 + oc : o0, groups);
        }
    }
    if (p->act_min > -128 || p->act_max < 127) {  /* SSAT gave [-128, 127]; narrow to the activation */
        for (int i = 0; i < n_pix * oc; ++i)
            out[i] = (int8_t)(out[i] < p->act_min ? p->act_min : (out[i] > p->act_max ? p->act_max : out[i]));
    }
}

#endif
