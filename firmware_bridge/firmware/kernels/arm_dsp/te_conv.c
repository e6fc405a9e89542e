/* CONV_2D, per-channel int8, for cores with the DSP extension.
 *
 * Two output pixels at a time are unrolled into an int16 column buffer
 * (scratch, te_conv_cols.h) and multiplied with two output channels at a
 * time, two multiply-accumulates per SMLAD.  Layers the generator packed
 * (mult == NULL: int16 weights prepared on the host) take te_conv_packed.h;
 * plain OHWI int8 weights take the general path below, where per 4 taps one
 * weight word per channel is split by SXTB16 into (w0,w2) and (w1,w3).
 *
 * Scratch (TE_CONV_SCRATCH_BYTES): the columns (4*Kp bytes for K = KH*KW*C
 * taps, Kp = K rounded up to a multiple of 4), then for the general path the
 * raw accumulators acc[2*oc + col] of every output channel, and, only when C
 * is not a multiple of 4, Kp bytes to gather one column.  A plain weight
 * row's last word may run into the next row (or TE_WEIGHT_PAD): it meets zero
 * taps. */
#include "te_kernels.h"
#include "te_conv_cols.h"
#include "te_conv_packed.h"
#include "te_dsp.h"

const char te_kernels_name[] = "arm_dsp";

/* acc[2*oc + col] = bias[oc] + dot(weights of channel oc, column col) over
 * 4*groups >= k taps (rows are k bytes apart), for channel pairs 0..pairs-1
 * (pairs >= 1, groups >= 1). */
void te_conv_pairs(const int32_t *cols, const int8_t *w, int k, int pairs, const int32_t *bias, int32_t *acc,
                   int groups);

#if TE_DSP_NATIVE
/* One group of 4 taps: r0 columns, r1/r2 the two channels' weights, r4-r7
 * accumulators, r8-r11 the group's column words: 15 instructions for 16 MACs. */
#define TE_GROUP \
    "  ldmia r0!, {r8-r11}\n" \
    "  ldr ip, [r1], #4\n" \
    "  sxtb16 lr, ip\n" \
    "  sxtb16 ip, ip, ror #8\n" \
    "  smlad r4, lr, r8, r4\n" \
    "  smlad r4, ip, r9, r4\n" \
    "  smlad r5, lr, r10, r5\n" \
    "  smlad r5, ip, r11, r5\n" \
    "  ldr ip, [r2], #4\n" \
    "  sxtb16 lr, ip\n" \
    "  sxtb16 ip, ip, ror #8\n" \
    "  smlad r6, lr, r8, r6\n" \
    "  smlad r6, ip, r9, r6\n" \
    "  smlad r7, lr, r10, r7\n" \
    "  smlad r7, ip, r11, r7\n"

/* Hand-scheduled: the group loop keeps 14 registers live, which GCC spills.
 * Stack after the prologue: [sp] cols, [sp+4] k, [sp+8] pairs left,
 * [sp+52] bias, [sp+56] acc, [sp+60] groups. */
__asm__(
    "  .text\n  .syntax unified\n  .thumb\n  .align 2\n"
    "  .global te_conv_pairs\n  .type te_conv_pairs, %function\n  .thumb_func\n"
    "te_conv_pairs:\n"
    "  push {r4-r11, lr}\n"
    "  sub sp, sp, #16\n"
    "  str r0, [sp]\n"
    "  str r2, [sp, #4]\n"
    "  str r3, [sp, #8]\n"
    "1:\n"
    "  ldr ip, [sp, #52]\n"
    "  ldrd r4, r6, [ip], #8\n"
    "  str ip, [sp, #52]\n"
    "  mov r5, r4\n"
    "  mov r7, r6\n"
    "  ldr r0, [sp]\n"
    "  ldr lr, [sp, #4]\n"
    "  add r2, r1, lr\n"
    "  ldr r3, [sp, #60]\n"
    "  tst r3, #1\n"
    "  beq 2f\n"
    TE_GROUP
    "  subs r3, r3, #1\n"
    "  beq 4f\n"
    "2:\n"
    TE_GROUP
    TE_GROUP
    "  subs r3, r3, #2\n"
    "  bne 2b\n"
    "4:\n"
    "  ldr lr, [sp, #4]\n"
    "  rsb ip, lr, #0\n"
    "  and ip, ip, #3\n"
    "  sub r1, r2, ip\n"
    "  ldr ip, [sp, #56]\n"
    "  stmia ip!, {r4-r7}\n"
    "  str ip, [sp, #56]\n"
    "  ldr r3, [sp, #8]\n"
    "  subs r3, r3, #1\n"
    "  str r3, [sp, #8]\n"
    "  bne 1b\n"
    "  add sp, sp, #16\n"
    "  pop {r4-r11, pc}\n"
    "  .size te_conv_pairs, .-te_conv_pairs\n");
#else
void te_conv_pairs(const int32_t *cols, const int8_t *w, int k, int pairs, const int32_t *bias, int32_t *acc,
                   int groups)
{
    for (int pr = 0; pr < pairs; ++pr, w += 2 * k, bias += 2, acc += 4) {
        int32_t a00 = bias[0], a01 = bias[0], a10 = bias[1], a11 = bias[1];
        const int32_t *x = cols;
        const int8_t *w0 = w, *w1 = w + k;
        for (int g = 0; g < groups; ++g, x += 4, w0 += 4, w1 += 4) {
            uint32_t v = te_read32(w0);
            int32_t lo = te_sxtb16(v), hi = te_sxtb16_ror8(v);
            a00 = te_smlad(hi, x[1], te_smlad(lo, x[0], a00));
            a01 = te_smlad(hi, x[3], te_smlad(lo, x[2], a01));
            v = te_read32(w1);
            lo = te_sxtb16(v);
            hi = te_sxtb16_ror8(v);
            a10 = te_smlad(hi, x[1], te_smlad(lo, x[0], a10));
            a11 = te_smlad(hi, x[3], te_smlad(lo, x[2], a11));
        }
        acc[0] = a00; acc[1] = a01; acc[2] = a10; acc[3] = a11;
    }
}
#endif

/* The last channel when the channel count is odd. */
static void odd_channel(const te_conv_params_t *p, const int32_t *cols, int k, int groups, int32_t *acc)
{
    const int oc = p->out_c - 1;
    const int8_t *w0 = p->w + oc * k;
    int32_t a0 = p->bias[oc], a1 = p->bias[oc];
    for (int g = 0; g < groups; ++g, cols += 4) {
        const uint32_t v = te_read32(w0 + 4 * g);
        const int32_t lo = te_sxtb16(v), hi = te_sxtb16_ror8(v);
        a0 = te_smlad(hi, cols[1], te_smlad(lo, cols[0], a0));
        a1 = te_smlad(hi, cols[3], te_smlad(lo, cols[2], a1));
    }
    acc[2 * oc] = a0;
    acc[2 * oc + 1] = a1;
}

/* Every accumulator stays below 2^30 in magnitude when each |bias| < 2^29 and
 * K * 128 * 127 < 2^29; with right shifts >= 1 the fast requantization is
 * then exact (te_requant_fast).  Checked once per call. */
static int fast_ok(const te_conv_params_t *p, int k)
{
    if (k >= (1 << 29) / (128 * 127)) return 0;
    for (int oc = 0; oc < p->out_c; ++oc) {
        const int32_t b = p->bias[oc];
        if (b >= (1 << 29) || b <= -(1 << 29) || p->shift[oc] >= 0) return 0;
    }
    return 1;
}

static inline int32_t clamp(int32_t v, int32_t lo, int32_t hi) { return v < lo ? lo : (v > hi ? hi : v); }

/* Requantize and store one channel's outputs for one or two columns; the
 * clamp is SSAT alone when the activation range is all of int8 (no ReLU, or a
 * ReLU whose zero point is -128), else SSAT then lo/hi. */
#define TE_STORE_LOOP(CLAMP, TWO)                                                    \
    for (; shift < end; acc += 2) {                                                  \
        const int32_t r = -*shift++, round = 1 << (r - 1), m = *mult++;              \
        *out0++ = (int8_t)CLAMP(te_requant_fast(acc[0], m, r, round) + zp);           \
        if (TWO) *out1++ = (int8_t)CLAMP(te_requant_fast(acc[1], m, r, round) + zp);  \
    }

/* Kept out of line: inlined into te_conv_s8 its loop spills registers. */
__attribute__((noinline)) static void store_fast(const te_conv_params_t *p, const int32_t *acc, int8_t *out0,
                                                 int8_t *out1)
{
    const int32_t *mult = p->mult, zp = p->out_zp, lo = p->act_min, hi = p->act_max;
    const int8_t *shift = p->shift, *end = shift + p->out_c;
#define TE_CLAMP_RANGE(v) clamp(te_ssat8(v), lo, hi)
    if (lo == -128 && hi == 127) {
        if (out1) TE_STORE_LOOP(te_ssat8, 1) else TE_STORE_LOOP(te_ssat8, 0)
    } else {
        if (out1) TE_STORE_LOOP(TE_CLAMP_RANGE, 1) else TE_STORE_LOOP(TE_CLAMP_RANGE, 0)
    }
#undef TE_CLAMP_RANGE
}

static void store_general(const te_conv_params_t *p, const int32_t *acc, int8_t *out0, int8_t *out1)
{
    for (int oc = 0; oc < p->out_c; ++oc) {
        const int32_t m = p->mult[oc], s = p->shift[oc];
        out0[oc] = te_requant(acc[2 * oc], m, s, p->out_zp, p->act_min, p->act_max);
        if (out1) out1[oc] = te_requant(acc[2 * oc + 1], m, s, p->out_zp, p->act_min, p->act_max);
    }
}

void te_conv_s8(const te_conv_params_t *p, const int8_t *in, int8_t *out, void *scratch)
{
    if (p->mult == 0) {
        te_conv_packed(p, in, out, scratch);
        return;
    }
    const int k = p->k_h * p->k_w * p->in_c, kp = (k + 3) & ~3, groups = kp >> 2;
    const int n_pix = p->out_h * p->out_w, oc_n = p->out_c;
    int32_t *cols = (int32_t *)scratch;
    int32_t *acc = cols + kp;
    int8_t *stage = (int8_t *)(acc + 2 * oc_n);
    const int fast = fast_ok(p, k);
    for (int pix = 0; pix < n_pix; pix += 2) {
        const int two = pix + 1 < n_pix;
        te_im2col(p, in, pix, 0, cols, stage, k, kp);
        te_im2col(p, in, two ? pix + 1 : pix, 1, cols, stage, k, kp); /* odd tail: computed twice, stored once */
        if (oc_n >= 2) te_conv_pairs(cols, p->w, k, oc_n >> 1, p->bias, acc, groups);
        if (oc_n & 1) odd_channel(p, cols, k, groups, acc);
        int8_t *o0 = out + pix * oc_n;
        if (fast) store_fast(p, acc, o0, two ? o0 + oc_n : 0);
        else store_general(p, acc, o0, two ? o0 + oc_n : 0);
    }
}
