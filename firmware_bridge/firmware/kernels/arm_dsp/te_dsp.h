/* The few DSP-extension operations the arm_dsp kernels use.
 *
 * On a core with the DSP extension (Cortex-M4/M7/M33, -mcpu=cortex-m4) these
 * are ACLE intrinsics from arm_acle.h.  GCC 12 has no __ror and does not fold
 * a C rotate into SXTB16's ROR operand, so te_sxtb16_ror8 is one instruction
 * of inline assembly there.  -DTE_EMULATE_DSP gives plain C with identical
 * results, so the host tier can test these kernels' arithmetic; anything else
 * is a build error: the optimized set never degrades silently. */
#ifndef TE_DSP_H
#define TE_DSP_H

#include <stdint.h>
#include <string.h>

#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP && !defined(TE_EMULATE_DSP)
#include <arm_acle.h>
#define TE_DSP_NATIVE 1

static inline int32_t te_sxtb16(uint32_t x) { return (int32_t)__sxtb16((int8x4_t)x); }

static inline int32_t te_sxtb16_ror8(uint32_t x)
{
    int32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}

static inline int32_t te_sxtab16(int32_t acc, uint32_t x) { return (int32_t)__sxtab16(acc, (int8x4_t)x); }

static inline int32_t te_sxtab16_ror8(int32_t acc, uint32_t x)
{
    int32_t r;
    __asm__("sxtab16 %0, %1, %2, ror #8" : "=r"(r) : "r"(acc), "r"(x));
    return r;
}

static inline int32_t te_smlad(int32_t a, int32_t b, int32_t acc) { return __smlad(a, b, acc); }

static inline int32_t te_ssat8(int32_t v) { return __ssat(v, 8); }

/* acc + low halves product / high halves product (one instruction each). */
static inline int32_t te_smlabb(int32_t a, int32_t b, int32_t acc) { return __smlabb(a, b, acc); }
static inline int32_t te_smlatt(int32_t a, int32_t b, int32_t acc) { return __smlatt(a, b, acc); }
/* acc + bottom(a) * top(b) / top(a) * bottom(b) (one instruction each). */
static inline int32_t te_smlabt(int32_t a, int32_t b, int32_t acc) { return __smlabt(a, b, acc); }
static inline int32_t te_smlatb(int32_t a, int32_t b, int32_t acc) { return __smlatb(a, b, acc); }

/* (a * b + 2^31) >> 32, one instruction (not in arm_acle.h). */
static inline int32_t te_smmulr(int32_t a, int32_t b)
{
    int32_t r;
    __asm__("smmulr %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
    return r;
}

/* acc + ((a * b + 2^31) >> 32), one instruction. */
static inline int32_t te_smmlar(int32_t a, int32_t b, int32_t acc)
{
    int32_t r;
    __asm__("smmlar %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(acc));
    return r;
}

#elif defined(TE_EMULATE_DSP)
#define TE_DSP_NATIVE 0

static inline uint32_t te_ror(uint32_t x, unsigned n) { return (x >> n) | (x << ((32u - n) & 31u)); }

static inline int32_t te_pack16(int32_t lo, int32_t hi) { return (int32_t)(((uint32_t)hi << 16) | ((uint32_t)lo & 0xFFFFu)); }

static inline int32_t te_sxtb16(uint32_t x) { return te_pack16((int8_t)(x & 0xFF), (int8_t)((x >> 16) & 0xFF)); }

static inline int32_t te_sxtb16_ror8(uint32_t x) { return te_sxtb16(te_ror(x, 8)); }

static inline int32_t te_sxtab16(int32_t acc, uint32_t x)
{
    return te_pack16((int16_t)(acc & 0xFFFF) + (int8_t)(x & 0xFF),
                     (int16_t)((uint32_t)acc >> 16) + (int8_t)((x >> 16) & 0xFF));
}

static inline int32_t te_sxtab16_ror8(int32_t acc, uint32_t x) { return te_sxtab16(acc, te_ror(x, 8)); }

static inline int32_t te_smlad(int32_t a, int32_t b, int32_t acc)
{
    return (int32_t)((uint32_t)acc + (uint32_t)((int16_t)(a & 0xFFFF) * (int16_t)(b & 0xFFFF))
                     + (uint32_t)((int16_t)((uint32_t)a >> 16) * (int16_t)((uint32_t)b >> 16)));
}

static inline int32_t te_smmulr(int32_t a, int32_t b)
{
    return (int32_t)(((int64_t)a * b + ((int64_t)1 << 31)) >> 32);
}

static inline int32_t te_smmlar(int32_t a, int32_t b, int32_t acc)
{
    const uint64_t s = ((uint64_t)(uint32_t)acc << 32) + (uint64_t)((int64_t)a * b) + ((uint64_t)1 << 31);
    return (int32_t)(uint32_t)(s >> 32);
}

static inline int32_t te_ssat8(int32_t v) { return v < -128 ? -128 : (v > 127 ? 127 : v); }

static inline int32_t te_smlabb(int32_t a, int32_t b, int32_t acc)
{
    return (int32_t)((uint32_t)acc + (uint32_t)((int16_t)(a & 0xFFFF) * (int16_t)(b & 0xFFFF)));
}

static inline int32_t te_smlatt(int32_t a, int32_t b, int32_t acc)
{
    return (int32_t)((uint32_t)acc + (uint32_t)((int16_t)((uint32_t)a >> 16) * (int16_t)((uint32_t)b >> 16)));
}

static inline int32_t te_smlabt(int32_t a, int32_t b, int32_t acc)
{
    return (int32_t)((uint32_t)acc + (uint32_t)((int16_t)(a & 0xFFFF) * (int16_t)((uint32_t)b >> 16)));
}

static inline int32_t te_smlatb(int32_t a, int32_t b, int32_t acc)
{
    return (int32_t)((uint32_t)acc + (uint32_t)((int16_t)((uint32_t)a >> 16) * (int16_t)(b & 0xFFFF)));
}

#else
#error "kernels/arm_dsp needs a core with the Arm DSP extension (-mcpu=cortex-m4, -m7, -m33) or -DTE_EMULATE_DSP for host tests; use KERNELS=reference otherwise"
#endif

/* Unaligned little-endian 32-bit load (LDR handles it on ARMv7-M). */
static inline uint32_t te_read32(const int8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* Bytes 0-1 of a and bytes 0-1 of b / bytes 2-3 of a and of b (PKHBT / PKHTB). */
static inline uint32_t te_pack_lo(uint32_t a, uint32_t b) { return (a & 0xFFFFu) | (b << 16); }
static inline uint32_t te_pack_hi(uint32_t a, uint32_t b) { return (a >> 16) | (b & 0xFFFF0000u); }

/* The same as one instruction each: GCC 12 builds them from UXTH/ORR and LSR/LSL/ORR. */
#if TE_DSP_NATIVE
static inline uint32_t te_pkhbt16(uint32_t a, uint32_t b)
{
    uint32_t r;
    __asm__("pkhbt %0, %1, %2, lsl #16" : "=r"(r) : "r"(a), "r"(b));
    return r;
}
static inline uint32_t te_pkhtb16(uint32_t a, uint32_t b)
{
    uint32_t r;
    __asm__("pkhtb %0, %2, %1, asr #16" : "=r"(r) : "r"(a), "r"(b));
    return r;
}
#else
static inline uint32_t te_pkhbt16(uint32_t a, uint32_t b) { return te_pack_lo(a, b); }
static inline uint32_t te_pkhtb16(uint32_t a, uint32_t b) { return te_pack_hi(a, b); }
#endif

/* Unaligned little-endian 32-bit store (STR handles it on ARMv7-M). */
static inline void te_write32(int8_t *p, uint32_t v) { memcpy(p, &v, 4); }

/* The low and high int16 halves of a packed pair. */
static inline int32_t te_lo16(int32_t v) { return (int16_t)(v & 0xFFFF); }
static inline int32_t te_hi16(int32_t v) { return (int16_t)((uint32_t)v >> 16); }

/* Fast exact requantization for |x| < 2^30 and a right shift 1 <= r <= 31:
 * SRDHM(x, mult) = floor((x*mult + 2^30) / 2^31) = SMMULR(2x, mult), and
 * RoundingDivideByPOT(y, r) = (y + 2^(r-1) - (y < 0)) >> r, since |y| < 2^30
 * cannot overflow.  Callers check the bound (te_conv_fast_ok). */
static inline int32_t te_requant_fast(int32_t x, int32_t mult, int32_t r, int32_t round)
{
    const int32_t y = te_smmulr(x * 2, mult);
    return (y + round + (y >> 31)) >> r;
}

/* Requantization, with TFLite's double rounding (te_mbqm), for a positive
 * multiplier, which never reaches gemmlowp's saturating case. */
static inline int8_t te_requant(int32_t acc, int32_t mult, int32_t shift, int32_t zp, int32_t lo, int32_t hi)
{
    const int32_t left = shift > 0 ? shift : 0;
    const int32_t right = shift > 0 ? 0 : -shift;
    const int32_t x = (int32_t)((uint32_t)acc << left);
    int32_t y = (int32_t)(((int64_t)x * mult + (1 << 30)) >> 31);
    const int32_t mask = (int32_t)((1u << right) - 1u);
    const int32_t threshold = (mask >> 1) + (y < 0);
    y = (y >> right) + ((y & mask) > threshold) + zp;
    return (int8_t)(y < lo ? lo : (y > hi ? hi : y));
}

#endif
