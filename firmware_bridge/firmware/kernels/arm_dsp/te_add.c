/* ADD with rescaling, int8, for cores with the DSP extension.  The two input
 * rescales are looked up in the host-computed tables (lut1/lut2: 256 int32
 * each); the output rescale is TFLite's double rounding, through the fast
 * exact form when the table values keep the sum below 2^30. */
#include "te_kernels.h"
#include "te_dsp.h"

void te_add_s8(const te_add_params_t *p, const int8_t *a, const int8_t *b, int8_t *out)
{
    const int32_t *l1 = p->lut1 + 128, *l2 = p->lut2 + 128;
    const int32_t mo = p->out_mult, r = -p->out_shift, zp = p->out_zp, lo = p->act_min, hi = p->act_max;
    const int32_t mask = (int32_t)((1u << r) - 1u), half = mask >> 1;
    /* the tables are monotonic (positive multipliers): their ends bound them */
    const int32_t lim = 1 << 28;
    const int small = p->lut1[0] > -lim && p->lut1[255] < lim && p->lut2[0] > -lim && p->lut2[255] < lim;
    if (small && r >= 1) {
        const int32_t round = 1 << (r - 1);
        for (uint32_t i = 0; i < p->size; ++i) {
            int32_t y = te_requant_fast(l1[a[i]] + l2[b[i]], mo, r, round) + zp;
            out[i] = (int8_t)(y < lo ? lo : (y > hi ? hi : y));
        }
        return;
    }
    for (uint32_t i = 0; i < p->size; ++i) {
        const int32_t s = l1[a[i]] + l2[b[i]];
        int32_t y = (int32_t)(((int64_t)s * mo + (1 << 30)) >> 31);
        y = (y >> r) + ((y & mask) > half + (int32_t)((uint32_t)y >> 31)) + zp;
        out[i] = (int8_t)(y < lo ? lo : (y > hi ? hi : y));
    }
}
