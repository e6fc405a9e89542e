/* tinyexit int8 kernels: one API, two implementations.
 *
 * kernels/reference/  portable C99, loops shaped like TensorFlow Lite Micro's
 *                     reference kernels (the correctness baseline);
 * kernels/arm_dsp/    Cortex-M4/M7/M33 versions using the DSP extension
 *                     (SXTB16, SMLAD), same file names and symbols.
 * The build links exactly one set (KERNELS=reference|arm_dsp); nothing falls
 * back silently.  Semantics are defined by tinyexit/export/int8_ref.py.
 *
 * All "prepare" work happens on the host at code-generation time: the params
 * structs below hold folded biases, per-channel multipliers and shifts,
 * offsets and clamps; kernels only compute.  Shapes are NHWC, batch 1.
 */
#ifndef TE_KERNELS_H
#define TE_KERNELS_H

/* Version of the params structs and packed weight layouts below; generated C
 * refuses to compile against another (export/codegen.py KERNEL_ABI). */
#define TE_KERNEL_ABI 2

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* CONV_2D (OHWI weights) and DEPTHWISE_CONV_2D (1 x KH x KW x C*M weights).
 * bias is folded on the host: bias - in_zp * sum(weights of the channel), so
 * a kernel computes acc = bias + sum(w * x) where taps outside the image read
 * in_zp (the real value 0), which equals TFLite's skipping of those taps. */
typedef struct {
    uint16_t in_h, in_w, in_c;
    uint16_t out_h, out_w, out_c;
    uint8_t k_h, k_w, stride_h, stride_w, dil_h, dil_w;
    int16_t pad_top, pad_left;
    uint16_t depth_mult;          /* depthwise only */
    int8_t in_zp;
    int8_t act_min, act_max;
    int32_t out_zp;
    const int8_t *w;
    const int32_t *bias;          /* one per output channel (folded) */
    const int32_t *mult;          /* one per output channel */
    const int8_t *shift;          /* TFLite sign convention: > 0 shifts left */
} te_conv_params_t;

/* FULLY_CONNECTED: weights n_out x k, bias folded as for convolutions. */
typedef struct {
    uint16_t k, n_out;
    int8_t act_min, act_max;
    int32_t out_zp;
    const int8_t *w;
    const int32_t *bias;
    const int32_t *mult;
    const int8_t *shift;
} te_fc_params_t;

/* ADD with rescaling (TFLite's 20-bit left shift scheme).  lut1/lut2 hold,
 * for every int8 input value x (index x + 128), the rescaled input
 * RDBPOT(SRDHM((x + offset) << 20, mult), -shift), precomputed on the host;
 * kernels may use them or compute the same values. */
typedef struct {
    uint32_t size;
    int32_t in1_offset, in2_offset;
    int32_t in1_mult, in2_mult, out_mult;
    int8_t in1_shift, in2_shift, out_shift;  /* <= 0 */
    int8_t act_min, act_max;
    int32_t out_zp;
    const int32_t *lut1, *lut2;
} te_add_params_t;

/* MEAN over H and W (1/count folded into mult/shift). */
typedef struct {
    uint16_t h, w, c;
    int32_t in_zp, out_zp;
    int32_t mult;
    int8_t shift;
} te_mean_params_t;

/* AVERAGE_POOL_2D, same quantization in and out. */
typedef struct {
    uint16_t in_h, in_w, c, out_h, out_w;
    uint8_t k_h, k_w, stride_h, stride_w;
    int16_t pad_top, pad_left;
    int8_t act_min, act_max;
} te_avgpool_params_t;

/* PAD / PADV2 on H, W and C. */
typedef struct {
    uint16_t in_h, in_w, in_c, out_h, out_w, out_c;
    uint16_t pad_top, pad_left, pad_front;
    int8_t value;
} te_pad_params_t;

/* Element-wise table lookup (LOGISTIC: the table is computed on the host). */
typedef struct {
    uint32_t size;
    const int8_t *lut;            /* 256 entries, index = x + 128 */
} te_lut_params_t;

/* SOFTMAX int8 -> int8 (output scale 1/256, zero point -128) over the last axis.
 * exp_lut[d] = exp(-d in input steps) in Q0.31 as TFLite's fixed-point exp
 * computes it (0 where TFLite skips the difference); see int8_ref.softmax. */
typedef struct {
    uint32_t rows;
    uint16_t depth;
    const int32_t *exp_lut;       /* 256 entries, index = row max - x */
} te_softmax_params_t;

/* QUANTIZE int8 -> int8. */
typedef struct {
    uint32_t size;
    int32_t in_zp, out_zp, mult;
    int8_t shift;
} te_requant_params_t;

/* Weight arrays of CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED are followed
 * by at least this many zero bytes, so kernels may read whole words at a row end. */
#define TE_WEIGHT_PAD 4

/* Scratch (in the arena, planned on the host) each kernel may use.  The C
 * generator reserves the same amounts: export/codegen_plan.py scratch_bytes(). */
#define TE_ROUND4(n) ((((uint32_t)(n)) + 3u) & ~3u)
#define TE_CONV_SCRATCH_BYTES(k_h, k_w, c_in, c_out) \
    (4u * TE_ROUND4((uint32_t)(k_h) * (k_w) * (c_in)) + 8u * (uint32_t)(c_out) + \
     (((c_in) & 3u) ? TE_ROUND4((uint32_t)(k_h) * (k_w) * (c_in)) : 0u))
#define TE_FC_SCRATCH_BYTES(k) (2u * TE_ROUND4(k))

/* arm_dsp DEPTHWISE_CONV_2D, 3x3: widened input lines (int16, zero-point padded) of four channels hold at most
 * this many positions, (out - 1) * stride + 4 rounded up to even along a line (an image row, or a column when
 * the map is taller than wide and its columns fit); wider layers take the general path
 * (export/codegen_pack.py DW_RING_W and dw_transposed mirror it). */
#define TE_DW_RING_W 64

/* `out` may overlap `in` (the memory plan writes a conv over its dying input,
 * export/codegen_plan.py conv_shift): every implementation computes output
 * pixels in row-major order and writes pixel q only after it has read the
 * window of q; it may read ahead (later windows, whole rows), never behind. */
void te_conv_s8(const te_conv_params_t *p, const int8_t *in, int8_t *out, void *scratch);
void te_dwconv_s8(const te_conv_params_t *p, const int8_t *in, int8_t *out);
void te_fc_s8(const te_fc_params_t *p, const int8_t *in, int8_t *out, void *scratch);
void te_add_s8(const te_add_params_t *p, const int8_t *a, const int8_t *b, int8_t *out);
void te_mean_s8(const te_mean_params_t *p, const int8_t *in, int8_t *out);
void te_avgpool_s8(const te_avgpool_params_t *p, const int8_t *in, int8_t *out);
void te_pad_s8(const te_pad_params_t *p, const int8_t *in, int8_t *out);
void te_lut_s8(const te_lut_params_t *p, const int8_t *in, int8_t *out);
void te_softmax_s8(const te_softmax_params_t *p, const int8_t *in, int8_t *out);
void te_requant_s8(const te_requant_params_t *p, const int8_t *in, int8_t *out);
void te_copy_s8(uint32_t size, const int8_t *in, int8_t *out);

/* Which set is linked ("reference" or "arm_dsp"); reported to the host. */
extern const char te_kernels_name[];

#ifdef __cplusplus
}
#endif
#endif
