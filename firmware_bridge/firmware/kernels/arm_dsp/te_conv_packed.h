/* CONV_2D with weights packed on the host (export/codegen_pack.py); included by te_conv.c only.
 *
 * The generated code selects this layout in arm_dsp builds and marks it with
 * mult == shift == NULL: `w` then points at int32 words [MAGIC, K, out_c,
 * groups, then per channel pair and group of 4 taps: c0 (2w0,2w2), c0
 * (2w1,2w3), c1 (2w0,2w2), c1 (2w1,2w3) as int16 pairs], and `bias` at 8
 * words per channel pair [2*b0, 2*b1, M0, rz0, r0, M1, rz1, r1].  Per group
 * the inner loop is one LDM of columns (te_conv_cols.h), one LDM of weights
 * and 8 SMLAD: 10 instructions for 16 multiply-accumulates.  The accumulators
 * hold 2*acc, so requantization is SMMLAR + 4 instructions (exactness:
 * codegen_pack.py, which only packs layers it proves in range).  Scratch:
 * the columns (4*Kp bytes), then, when C is not a multiple of 4, Kp + 3
 * bytes to gather one column (TE_CONV_SCRATCH_BYTES leaves 8*out_c + Kp). */
#ifndef TE_CONV_PACKED_H
#define TE_CONV_PACKED_H

#include <stdint.h>

#include "te_conv_cols.h"
#include "te_dsp.h"
#include "te_kernels.h"

#define TE_PACK_MAGIC 0x314B5054
#define TE_PACK_HEADER 4

/* Channel pairs 0..pairs-1 of two pixels: accumulate `groups` groups from the
 * columns, requantize, store channel 2j, 2j+1 of pixel 0 at out0 and of pixel
 * 1 at out1 (both advance by 2 per pair; out1 == out0 is allowed). */
void te_conv_packed_pairs(const int32_t *cols, const int32_t *w, const int32_t *rq, int8_t *out0, int8_t *out1,
                          int groups, int pairs);

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
#define TE_PREQ(ACC, OUT) \
    "  smmlar r9, " ACC ", r6, r7\n" \
    "  sub.w r9, r9, " ACC ", lsr #31\n" \
    "  asr.w r9, r9, r8\n" \
    "  ssat r9, #8, r9\n" \
    "  strb r9, [" OUT "], #1\n"

/* Every register holds loop state, so the counters live on the stack: [sp]
 * columns, [sp+4] entry address, [sp+8] chunks per pair, [sp+12] chunks
 * left, [sp+16] rq, [sp+20] out0, [sp+24] out1, [sp+28] pairs left; the
 * caller's stacked arguments start at [sp+72].  Groups run in chunks of 8
 * unrolled (40 bytes each, all 32-bit encodings); the first chunk of a pair
 * is entered part-way so that it runs groups % 8 of them. */
__asm__(
    "  .text\n  .syntax unified\n  .thumb\n  .align 2\n"
    "  .global te_conv_packed_pairs\n  .type te_conv_packed_pairs, %function\n  .thumb_func\n"
    "te_conv_packed_pairs:\n"
    "  push {r4-r11, lr}\n"
    "  sub sp, sp, #36\n"
    "  str r0, [sp]\n"
    "  str r2, [sp, #16]\n"
    "  str r3, [sp, #20]\n"
    "  ldr r4, [sp, #72]\n"
    "  str r4, [sp, #24]\n"
    "  ldr r4, [sp, #76]\n"
    "  adds r5, r4, #7\n"
    "  lsrs r5, r5, #3\n"
    "  str r5, [sp, #8]\n"
    "  rsbs r4, r4, #0\n"
    "  and r4, r4, #7\n"
    "  add r4, r4, r4, lsl #2\n"
    "  lsls r4, r4, #3\n"
    "  adr.w r5, 3f\n"
    "  add r5, r5, r4\n"
    "  orr r5, r5, #1\n"
    "  str r5, [sp, #4]\n"
    "  ldr r4, [sp, #80]\n"
    "  str r4, [sp, #28]\n"
    "1:\n"
    "  ldr ip, [sp, #16]\n"
    "  ldmia ip!, {r2, r4}\n"
    "  str ip, [sp, #16]\n"
    "  mov r3, r2\n"
    "  mov r5, r4\n"
    "  ldr r0, [sp]\n"
    "  ldr ip, [sp, #8]\n"
    "  str ip, [sp, #12]\n"
    "  ldr ip, [sp, #4]\n"
    "  bx ip\n"
    "3:\n"
    TE_PGROUP TE_PGROUP TE_PGROUP TE_PGROUP TE_PGROUP TE_PGROUP TE_PGROUP TE_PGROUP
    "  ldr ip, [sp, #12]\n"
    "  subs ip, ip, #1\n"
    "  str ip, [sp, #12]\n"
    "  bne 3b\n"
    "  ldr ip, [sp, #16]\n"
    "  ldrd r10, r11, [sp, #20]\n"
    "  ldmia ip!, {r6, r7, r8}\n"
    TE_PREQ("r2", "r10") TE_PREQ("r3", "r11")
    "  ldmia ip!, {r6, r7, r8}\n"
    TE_PREQ("r4", "r10") TE_PREQ("r5", "r11")
    "  str ip, [sp, #16]\n"
    "  strd r10, r11, [sp, #20]\n"
    "  ldr ip, [sp, #28]\n"
    "  subs ip, ip, #1\n"
    "  str ip, [sp, #28]\n"
    "  bne 1b\n"
    "  add sp, sp, #36\n"
    "  pop {r4-r11, pc}\n"
    "  .size te_conv_packed_pairs, .-te_conv_packed_pairs\n");
#undef TE_PGROUP
#undef TE_PREQ
#else
static inline int8_t te_packed_requant(int32_t acc2, const int32_t *q)
{
    const int32_t t = te_smmlar(acc2, q[0], q[1]) - (int32_t)((uint32_t)acc2 >> 31);
    return (int8_t)te_ssat8(t >> q[2]);
}

void te_conv_packed_pairs(const int32_t *cols, const int32_t *w, const int32_t *rq, int8_t *out0, int8_t *out1,
                          int groups, int pairs)
{
    for (int pr = 0; pr < pairs; ++pr, rq += 8) {
        int32_t a00 = rq[0], a01 = rq[0], a10 = rq[1], a11 = rq[1];
        const int32_t *x = cols;
        for (int g = 0; g < groups; ++g, x += 4, w += 4) {
            a00 = te_smlad(w[1], x[1], te_smlad(w[0], x[0], a00));
            a01 = te_smlad(w[1], x[3], te_smlad(w[0], x[2], a01));
            a10 = te_smlad(w[3], x[1], te_smlad(w[2], x[0], a10));
            a11 = te_smlad(w[3], x[3], te_smlad(w[2], x[2], a11));
        }
        *out0++ = te_packed_requant(a00, rq + 2);
        *out1++ = te_packed_requant(a01, rq + 2);
        *out0++ = te_packed_requant(a10, rq + 5);
        *out1++ = te_packed_requant(a11, rq + 5);
    }
}
#endif

/* A packed layer whose header disagrees with its params was generated for
 * another kernel version: stop rather than compute garbage. */
static void te_packed_check(const te_conv_params_t *p, const int32_t *blob, int k)
{
    if (blob[0] != TE_PACK_MAGIC || blob[1] != k || blob[2] != p->out_c || blob[3] != (k + 3) / 4)
        __builtin_trap();
}

static void te_conv_packed(const te_conv_params_t *p, const int8_t *in, int8_t *out, void *scratch)
{
    const int32_t *blob = (const int32_t *)(const void *)p->w;
    const int k = p->k_h * p->k_w * p->in_c, kp = (k + 3) & ~3, groups = kp >> 2;
    const int n_pix = p->out_h * p->out_w, oc = p->out_c;
    int32_t *cols = (int32_t *)scratch;
    int8_t *stage = (int8_t *)(cols + kp);
    te_packed_check(p, blob, k);
    for (int pix = 0; pix < n_pix; pix += 2) {
        const int two = pix + 1 < n_pix;
        te_im2col(p, in, pix, 0, cols, stage, k, kp, 1);
        te_im2col(p, in, two ? pix + 1 : pix, 1, cols, stage, k, kp, 1); /* odd tail: twice, same bytes */
        int8_t *o0 = out + pix * oc;
        te_conv_packed_pairs(cols, blob + TE_PACK_HEADER, p->bias, o0, two ? o0 + oc : o0, groups, oc >> 1);
    }
    if (p->act_min > -128 || p->act_max < 127) {  /* SSAT gave [-128, 127]; narrow to the activation */
        for (int i = 0; i < n_pix * oc; ++i)
            out[i] = (int8_t)(out[i] < p->act_min ? p->act_min : (out[i] > p->act_max ? p->act_max : out[i]));
    }
}

#endif
