/* ADD with rescaling, int8, for cores with the DSP extension.  The two input
 * rescales are looked up in the host-computed tables (lut1/lut2: 256 int32
 * each); the output rescale is TFLite's double rounding.  When the table
 * values keep the doubled sum below 2^30 it takes one SMMLAR (as the packed
 * convolutions, export/codegen_pack.py): with s = lut1[a] + lut2[b],
 * t = SMMLAR(2s, M, 2^(r-1) + zp*2^r) - (s < 0) and out = SSAT8(t >> r). */
#include "te_kernels.h"
#include "te_dsp.h"

#define TE_ADD_FAST(CLAMP)                                                     \
    for (uint32_t i = 0; i < n; ++i) {                                         \
        const int32_t s2 = 2 * (l1[a[i]] + l2[b[i]]);                          \
        const int32_t t = te_smmlar(s2, mo, rz) - (int32_t)((uint32_t)s2 >> 31); \
        out[i] = (int8_t)CLAMP(te_ssat8(t >> r));                              \
    }

static inline int32_t te_clamp_range(int32_t v, int32_t lo, int32_t hi) { return v < lo ? lo : (v > hi ? hi : v); }

void te_add_s8(const te_add_params_t *p, const int8_t *a, const int8_t *b, int8_t *out)
{
    const int32_t *l1 = p->lut1 + 128, *l2 = p->lut2 + 128;
    const int32_t mo = p->out_mult, r = -p->out_shift, zp = p->out_zp, lo = p->act_min, hi = p->act_max;
    const uint32_t n = p->size;
    /* the tables are monotonic (positive multipliers): their ends bound them */
    const int32_t lim = 1 << 28;
    const int small = p->lut1[0] > -lim && p->lut1[255] < lim && p->lut2[0] > -lim && p->lut2[255] < lim;
    /* |2s| < 2^30, |y| < 2^29 and, for 1 <= r <= 22, |rz| < 2^30: nothing leaves int32 */
    if (small && r >= 1 && r <= 22) {
        const int32_t rz = (1 << (r - 1)) + zp * (1 << r);
        if (lo == -128 && hi == 127) {
#define TE_NO_CLAMP(v) (v)
            TE_ADD_FAST(TE_NO_CLAMP)
#undef TE_NO_CLAMP
        } else {
#define TE_ACT_CLAMP(v) te_clamp_range(v, lo, hi)
            TE_ADD_FAST(TE_ACT_CLAMP)
#undef TE_ACT_CLAMP
        }
        return;
    }
    const int32_t mask = (int32_t)((1u << r) - 1u), half = mask >> 1;
    for (uint32_t i = 0; i < n; ++i) {
        const int32_t s = l1[a[i]] + l2[b[i]];
        int32_t y = (int32_t)(((int64_t)s * mo + (1 << 30)) >> 31);
        y = (y >> r) + ((y & mask) > half + (int32_t)((uint32_t)y >> 31)) + zp;
        out[i] = (int8_t)(y < lo ? lo : (y > hi ? hi : y));
    }
}
