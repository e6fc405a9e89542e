/* FULLY_CONNECTED, int8, for cores with the DSP extension.
 *
 * The input is widened once per call into scratch in SXTB16 order, per 4
 * taps (x0,x2),(x1,x3), zero beyond k, so a row's last group may run past k
 * into zero taps.  Then four output rows at a time share each input word.
 *
 * Speed mode (mult == NULL): weights the generator packed in row blocks of
 * doubled int16 pairs (export/codegen_pack.py pack_fc): per group of 4 taps
 * one LDRD of input, two LDM of weights and 8 SMLAD, 11 instructions for 16
 * multiply-accumulates, then the one-SMMLAR requantization of packed
 * convolutions.  Size mode (plain int8 OHWI-like rows, TE_WEIGHT_PAD after
 * the last): each weight word is split by SXTB16 on the fly. */
#include "te_kernels.h"
#include "te_dsp.h"

#define TE_FC_MAGIC 0x43465054
#define TE_FC_ROWS 4

/* Input -> scratch words; returns the number of 4-tap groups. */
static int widen_input(const int8_t *in, int k, int32_t *x)
{
    const int k4 = k & ~3;
    for (int i = 0; i < k4; i += 4, x += 2) {
        const uint32_t v = te_read32(in + i);
        x[0] = te_sxtb16(v);
        x[1] = te_sxtb16_ror8(v);
    }
    if (k != k4) {
        uint32_t v = 0;
        for (int j = 0; j < k - k4; ++j) v |= (uint32_t)(uint8_t)in[k4 + j] << (8 * j);
        x[0] = te_sxtb16(v);
        x[1] = te_sxtb16_ror8(v);
    }
    return (k + 3) >> 2;
}

/* `blocks` blocks of 4 rows: acc = 2*bias + sum(2w * x) over `groups` groups,
 * requantized (rq: per block [2b0..2b3, M, rz, r per row]) to 4 bytes at out. */
void te_fc_packed_blocks(const int32_t *x, const int32_t *w, const int32_t *rq, int8_t *out, int groups,
                         int blocks);

#if TE_DSP_NATIVE
#define TE_FCGROUP \
    "  ldrd r6, r7, [r0], #8\n" \
    "  ldmia.w r1!, {r8-r11}\n" \
    "  smlad r2, r8, r6, r2\n" \
    "  smlad r2, r9, r7, r2\n" \
    "  smlad r3, r10, r6, r3\n" \
    "  smlad r3, r11, r7, r3\n" \
    "  ldmia.w r1!, {r8-r11}\n" \
    "  smlad r4, r8, r6, r4\n" \
    "  smlad r4, r9, r7, r4\n" \
    "  smlad r5, r10, r6, r5\n" \
    "  smlad r5, r11, r7, r5\n"
#define TE_FCREQ(ACC) \
    "  ldmia ip!, {r6, r7, r8}\n" \
    "  smmlar r9, " ACC ", r6, r7\n" \
    "  sub.w r9, r9, " ACC ", lsr #31\n" \
    "  asr.w r9, r9, r8\n" \
    "  ssat r9, #8, r9\n" \
    "  strb r9, [r0], #1\n"

/* Stack after the prologue: [sp] x, [sp+4] entry address, [sp+8] rq, [sp+12]
 * out, [sp+16] blocks left, [sp+20] chunks; the stacked arguments groups and
 * blocks at [sp+60], [sp+64].  Groups run in chunks of 4 unrolled (44 bytes
 * each, all 32-bit encodings); each block enters the first chunk part-way so
 * that it runs groups % 4 of them (4 when that is 0). */
__asm__(
    "  .text\n  .syntax unified\n  .thumb\n  .align 2\n"
    "  .global te_fc_packed_blocks\n  .type te_fc_packed_blocks, %function\n  .thumb_func\n"
    "te_fc_packed_blocks:\n"
    "  push {r4-r11, lr}\n"
    "  sub sp, sp, #24\n"
    "  str r0, [sp]\n"
    "  str r3, [sp, #12]\n"
    "  ldr r4, [sp, #60]\n"
    "  ldr r5, [sp, #64]\n"
    "  str r5, [sp, #16]\n"
    "  adds r6, r4, #3\n"
    "  lsrs r6, r6, #2\n"
    "  str r6, [sp, #20]\n"
    "  rsbs r4, r4, #0\n"
    "  and r4, r4, #3\n"
    "  movs r6, #44\n"
    "  muls r4, r6, r4\n"
    "  adr.w r5, 3f\n"
    "  add r5, r5, r4\n"
    "  orr r5, r5, #1\n"
    "  str r5, [sp, #4]\n"
    "  mov ip, r2\n"
    "1:\n"
    "  ldmia ip!, {r2-r5}\n"
    "  str ip, [sp, #8]\n"
    "  ldr r0, [sp]\n"
    "  ldr ip, [sp, #20]\n"
    "  ldr lr, [sp, #4]\n"
    "  bx lr\n"
    "  .align 2\n"
    "3:\n"
    TE_FCGROUP TE_FCGROUP TE_FCGROUP TE_FCGROUP
    "  subs ip, ip, #1\n"
    "  bne 3b\n"
    "  ldr ip, [sp, #8]\n"
    "  ldr r0, [sp, #12]\n"
    TE_FCREQ("r2") TE_FCREQ("r3") TE_FCREQ("r4") TE_FCREQ("r5")
    "  str r0, [sp, #12]\n"
    "  ldr lr, [sp, #16]\n"
    "  subs lr, lr, #1\n"
    "  str lr, [sp, #16]\n"
    "  bne 1b\n"
    "  add sp, sp, #24\n"
    "  pop {r4-r11, pc}\n"
    "  .size te_fc_packed_blocks, .-te_fc_packed_blocks\n");
#undef TE_FCGROUP
#undef TE_FCREQ
#else
void te_fc_packed_blocks(const int32_t *x, const int32_t *w, const int32_t *rq, int8_t *out, int groups,
                         int blocks)
{
    for (; blocks > 0; --blocks, rq += 4 * TE_FC_ROWS) {
        int32_t acc[TE_FC_ROWS];
        for (int r = 0; r < TE_FC_ROWS; ++r) acc[r] = rq[r];
        for (int g = 0; g < groups; ++g, w += 2 * TE_FC_ROWS)
            for (int r = 0; r < TE_FC_ROWS; ++r) acc[r] = te_smlad(w[2 * r + 1], x[2 * g + 1], te_smlad(w[2 * r], x[2 * g], acc[r]));
        for (int r = 0; r < TE_FC_ROWS; ++r) {
            const int32_t *q = rq + TE_FC_ROWS + 3 * r;
            const int32_t t = te_smmlar(acc[r], q[0], q[1]) - (int32_t)((uint32_t)acc[r] >> 31);
            *out++ = (int8_t)te_ssat8(t >> q[2]);
        }
    }
}
#endif

static void fc_packed(const te_fc_params_t *p, const int32_t *x, int groups, int8_t *out)
{
    const int32_t *blob = (const int32_t *)(const void *)p->w;
    if (blob[0] != TE_FC_MAGIC || blob[1] != p->k || blob[2] != p->n_out || blob[3] != groups ||
        blob[4] != TE_FC_ROWS)
        __builtin_trap();  /* generated for another kernel version */
    const int full = p->n_out / TE_FC_ROWS, tail = p->n_out % TE_FC_ROWS;
    const int32_t *w = blob + 8;
    if (full) te_fc_packed_blocks(x, w, p->bias, out, groups, full);
    if (tail) {
        int8_t last[TE_FC_ROWS];
        te_fc_packed_blocks(x, w + full * groups * 2 * TE_FC_ROWS, p->bias + full * 4 * TE_FC_ROWS, last, groups, 1);
        for (int r = 0; r < tail; ++r) out[full * TE_FC_ROWS + r] = last[r];
    }
    if (p->act_min > -128 || p->act_max < 127) {  /* SSAT gave [-128, 127]; narrow to the activation */
        for (int i = 0; i < p->n_out; ++i)
            out[i] = (int8_t)(out[i] < p->act_min ? p->act_min : (out[i] > p->act_max ? p->act_max : out[i]));
    }
}

/* As te_conv.c's fast_ok: |acc| < 2^30 for any input and right shifts only. */
static int fast_ok(const te_fc_params_t *p)
{
    if (p->k >= (1 << 29) / (128 * 127)) return 0;
    for (int o = 0; o < p->n_out; ++o) {
        const int32_t b = p->bias[o];
        if (b >= (1 << 29) || b <= -(1 << 29) || p->shift[o] >= 0) return 0;
    }
    return 1;
}

static inline int8_t requant_row(const te_fc_params_t *p, int o, int32_t acc, int fast)
{
    if (!fast) return te_requant(acc, p->mult[o], p->shift[o], p->out_zp, p->act_min, p->act_max);
    const int32_t r = -p->shift[o];
    int32_t v = te_requant_fast(acc, p->mult[o], r, 1 << (r - 1)) + p->out_zp;
    v = te_ssat8(v);
    return (int8_t)(v < p->act_min ? p->act_min : (v > p->act_max ? p->act_max : v));
}

/* One row's dot product from its int8 weights (any alignment). */
static inline int32_t dot_row(const int8_t *w, const int32_t *x, int groups, int32_t acc)
{
    for (int g = 0; g < groups; ++g, w += 4, x += 2) {
        const uint32_t v = te_read32(w);
        acc = te_smlad(te_sxtb16_ror8(v), x[1], te_smlad(te_sxtb16(v), x[0], acc));
    }
    return acc;
}

/* acc[r] += dot(row r, x) for the 4 int8 rows w, w+k, w+2k, w+3k over `groups` (>= 1) groups. */
void te_fc_rows4(const int32_t *x, const int8_t *w, int k, int groups, int32_t *acc);

#if TE_DSP_NATIVE
#define TE_FCROWS2(PTR, A, B) \
    "  ldr r8, [" PTR ", r11]\n" \
    "  ldr r9, [" PTR "], #4\n" \
    "  sxtb16 lr, r9\n" \
    "  smlad " A ", lr, r6, " A "\n" \
    "  sxtb16 r9, r9, ror #8\n" \
    "  smlad " A ", r9, r7, " A "\n" \
    "  sxtb16 lr, r8\n" \
    "  smlad " B ", lr, r6, " B "\n" \
    "  sxtb16 r8, r8, ror #8\n" \
    "  smlad " B ", r8, r7, " B "\n"

/* Rows 0/1 read through r1 (row 1 at +k, r11), rows 2/3 through r10: 23
 * instructions per 16 multiply-accumulates, no spills.  [sp+36] acc. */
__asm__(
    "  .text\n  .syntax unified\n  .thumb\n  .align 2\n"
    "  .global te_fc_rows4\n  .type te_fc_rows4, %function\n  .thumb_func\n"
    "te_fc_rows4:\n"
    "  push {r4-r11, lr}\n"
    "  mov r11, r2\n"
    "  add r10, r1, r2, lsl #1\n"
    "  add ip, r0, r3, lsl #3\n"
    "  ldr lr, [sp, #36]\n"
    "  ldmia lr, {r2-r5}\n"
    "1:\n"
    "  ldrd r6, r7, [r0], #8\n"
    TE_FCROWS2("r1", "r2", "r3")
    TE_FCROWS2("r10", "r4", "r5")
    "  cmp r0, ip\n"
    "  bne 1b\n"
    "  ldr lr, [sp, #36]\n"
    "  stmia lr, {r2-r5}\n"
    "  pop {r4-r11, pc}\n"
    "  .size te_fc_rows4, .-te_fc_rows4\n");
#undef TE_FCROWS2
#else
void te_fc_rows4(const int32_t *x, const int8_t *w, int k, int groups, int32_t *acc)
{
    for (int r = 0; r < 4; ++r) acc[r] = dot_row(w + r * k, x, groups, acc[r]);
}
#endif

static void fc_plain(const te_fc_params_t *p, const int32_t *x, int groups, int8_t *out)
{
    const int k = p->k, n = p->n_out, fast = fast_ok(p);
    int o = 0;
    for (; o + TE_FC_ROWS <= n; o += TE_FC_ROWS) {
        int32_t acc[TE_FC_ROWS] = {p->bias[o], p->bias[o + 1], p->bias[o + 2], p->bias[o + 3]};
        te_fc_rows4(x, p->w + o * k, k, groups, acc);
        for (int r = 0; r < TE_FC_ROWS; ++r) out[o + r] = requant_row(p, o + r, acc[r], fast);
    }
    for (; o < n; ++o) out[o] = requant_row(p, o, dot_row(p->w + o * k, x, groups, p->bias[o]), fast);
}

void te_fc_s8(const te_fc_params_t *p, const int8_t *in, int8_t *out, void *scratch)
{
    int32_t *x = (int32_t *)scratch;
    const int groups = widen_input(in, p->k, x);
    if (p->mult == 0)
        fc_packed(p, x, groups, out);
    else
        fc_plain(p, x, groups, out);
}
