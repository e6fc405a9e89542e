/* CONV_2D input columns for the arm_dsp kernels (included by te_conv.c only).
 *
 * Two output pixels are unrolled at a time into one int16 column buffer: for
 * K = KH*KW*C taps and Kp = K rounded up to a multiple of 4, Kp/4 groups of
 * four int32 words [pixel0 (x0,x2), pixel0 (x1,x3), pixel1 (x0,x2), pixel1
 * (x1,x3)], the SXTB16 halves of 4 taps (taps past K are zero).  Taps outside
 * the image read the input zero point (the real value 0; the folded bias
 * accounts for it).  With C a multiple of 4 the taps of one kernel row that
 * lie inside the image are contiguous in NHWC memory and widen in one run;
 * any other C gathers the taps bytewise into `stage` (Kp bytes) first.
 * Activations are word-aligned (the generator's plan aligns every tensor to
 * 8 bytes), which the LDM in te_widen_rows needs. */
#ifndef TE_CONV_COLS_H
#define TE_CONV_COLS_H

#include <stdint.h>

#include "te_kernels.h"
#include "te_dsp.h"

/* `rows` runs of `words` (>= 1) words of 4 int8 taps -> column slot words
 * (4 int32 apart); after each run the source skips `skip` bytes.  The
 * source is word-aligned (LDM). */
#if TE_DSP_NATIVE
void te_widen_rows(const int8_t *src, int32_t *dst, int words, int rows, int skip);
#define TE_WIDEN1(R) \
    "  sxtb16 r8, " R "\n" \
    "  sxtb16 " R ", " R ", ror #8\n" \
    "  strd r8, " R ", [r1], #16\n"
__asm__(
    "  .text\n  .syntax unified\n  .thumb\n  .align 2\n"
    "  .global te_widen_rows\n  .type te_widen_rows, %function\n  .thumb_func\n"
    "te_widen_rows:\n"
    "  push {r4-r8, lr}\n"
    "  ldr lr, [sp, #24]\n"
    "0:\n"
    "  subs ip, r2, #4\n"
    "  blt 2f\n"
    "1:\n"
    "  ldmia r0!, {r4-r7}\n"
    TE_WIDEN1("r4") TE_WIDEN1("r5") TE_WIDEN1("r6") TE_WIDEN1("r7")
    "  subs ip, ip, #4\n"
    "  bge 1b\n"
    "2:\n"
    "  adds ip, ip, #4\n"
    "  beq 4f\n"
    "3:\n"
    "  ldr r4, [r0], #4\n"
    TE_WIDEN1("r4")
    "  subs ip, ip, #1\n"
    "  bne 3b\n"
    "4:\n"
    "  add r0, r0, lr\n"
    "  subs r3, r3, #1\n"
    "  bne 0b\n"
    "  pop {r4-r8, pc}\n"
    "  .size te_widen_rows, .-te_widen_rows\n");
#undef TE_WIDEN1
#else
static void te_widen_rows(const int8_t *src, int32_t *dst, int words, int rows, int skip)
{
    for (; rows > 0; --rows, src += skip) {
        for (int i = 0; i < words; ++i, src += 4, dst += 4) {
            const uint32_t v = te_read32(src);
            dst[0] = te_sxtb16(v);
            dst[1] = te_sxtb16_ror8(v);
        }
    }
}
#endif

/* `words` column slot words of the zero point. */
static inline int32_t *te_fill_zp(int32_t *dst, int words, int32_t zlo, int32_t zhi)
{
    for (; words > 0; --words, dst += 4) {
        dst[0] = zlo;
        dst[1] = zhi;
    }
    return dst;
}

/* C % 4 == 0, no horizontal dilation: each kernel row is a zero-point run,
 * a contiguous run of image taps and another zero-point run. */
static void te_im2col_rows(const te_conv_params_t *p, const int8_t *in, int x0, int y0, int32_t *dst, int32_t zlo,
                           int32_t zhi)
{
    const int c = p->in_c, row_words = (p->k_w * c) >> 2, stride = p->dil_h * p->in_w * c;
    const int kx_lo = x0 < 0 ? -x0 : 0;
    const int kx_hi = x0 + p->k_w > p->in_w ? p->in_w - x0 : p->k_w;
    int ky_lo = y0 < 0 ? (-y0 + p->dil_h - 1) / p->dil_h : 0;
    int ky_hi = p->k_h;
    if (ky_lo > p->k_h) ky_lo = p->k_h;
    while (ky_hi > ky_lo && y0 + (ky_hi - 1) * p->dil_h >= p->in_h) --ky_hi;
    dst = te_fill_zp(dst, ky_lo * row_words, zlo, zhi);
    const int rows = ky_hi - ky_lo;
    if (kx_hi <= kx_lo) {
        dst = te_fill_zp(dst, rows * row_words, zlo, zhi);
    } else if (rows > 0) {
        const int8_t *src = in + ((y0 + ky_lo * p->dil_h) * p->in_w + x0 + kx_lo) * c;
        const int words = ((kx_hi - kx_lo) * c) >> 2;
        if (words == row_words) {  /* whole rows inside the image: one call */
            te_widen_rows(src, dst, words, rows, stride - 4 * words);
            dst += 4 * words * rows;
        } else {
            for (int ky = 0; ky < rows; ++ky, src += stride) {
                dst = te_fill_zp(dst, (kx_lo * c) >> 2, zlo, zhi);
                te_widen_rows(src, dst, words, 1, 0);
                dst = te_fill_zp(dst + 4 * words, ((p->k_w - kx_hi) * c) >> 2, zlo, zhi);
            }
        }
    }
    te_fill_zp(dst, (p->k_h - ky_hi) * row_words, zlo, zhi);
}

/* C % 4 == 0 with horizontal dilation: tap by tap. */
static void te_im2col_taps(const te_conv_params_t *p, const int8_t *in, int x0, int y0, int32_t *dst, int32_t zlo,
                           int32_t zhi)
{
    const int c = p->in_c;
    for (int ky = 0; ky < p->k_h; ++ky) {
        const int iy = y0 + ky * p->dil_h;
        for (int kx = 0; kx < p->k_w; ++kx, dst += c) {
            const int ix = x0 + kx * p->dil_w;
            if (iy < 0 || iy >= p->in_h || ix < 0 || ix >= p->in_w)
                te_fill_zp(dst, c >> 2, zlo, zhi);
            else
                te_widen_rows(in + (iy * p->in_w + ix) * c, dst, c >> 2, 1, 0);
        }
    }
}

/* Unroll output pixel `pix` into slot `slot` (0 or 1) of the column buffer. */
static void te_im2col(const te_conv_params_t *p, const int8_t *in, int pix, int slot, int32_t *cols,
                      int8_t *stage, int k, int kp)
{
    const int oy = pix / p->out_w, ox = pix % p->out_w;
    const int y0 = oy * p->stride_h - p->pad_top, x0 = ox * p->stride_w - p->pad_left;
    const int c = p->in_c;
    int32_t *dst = cols + 2 * slot;
    if ((c & 3) == 0) {
        const uint32_t zp4 = 0x01010101u * (uint8_t)p->in_zp;
        const int32_t zlo = te_sxtb16(zp4), zhi = te_sxtb16_ror8(zp4);
        if (p->k_h == 1 && p->k_w == 1) {  /* 1x1: the column is the pixel's C bytes */
            if (y0 >= 0 && y0 < p->in_h && x0 >= 0 && x0 < p->in_w)
                te_widen_rows(in + (y0 * p->in_w + x0) * c, dst, c >> 2, 1, 0);
            else
                te_fill_zp(dst, c >> 2, zlo, zhi);
        } else if (p->dil_w == 1)
            te_im2col_rows(p, in, x0, y0, dst, zlo, zhi);
        else
            te_im2col_taps(p, in, x0, y0, dst, zlo, zhi);
        return;
    }
    /* Any other channel count: gather the taps in natural order, zero up to Kp, widen. */
    int8_t *g = stage;
    for (int ky = 0; ky < p->k_h; ++ky) {
        const int iy = y0 + ky * p->dil_h;
        for (int kx = 0; kx < p->k_w; ++kx) {
            const int ix = x0 + kx * p->dil_w;
            if (iy < 0 || iy >= p->in_h || ix < 0 || ix >= p->in_w) {
                for (int i = 0; i < c; ++i) *g++ = p->in_zp;
                continue;
            }
            const int8_t *src = in + (iy * p->in_w + ix) * c;
            for (int i = 0; i < c; ++i) *g++ = src[i];
        }
    }
    for (int i = k; i < kp; ++i) *g++ = 0;
    te_widen_rows(stage, dst, kp >> 2, 1, 0);
}

#endif
