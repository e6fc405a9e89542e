/* Element-wise 256-entry table lookup (LOGISTIC), int8, unrolled by four. */
#include "te_kernels.h"
#include "te_dsp.h"

void te_lut_s8(const te_lut_params_t *p, const int8_t *in, int8_t *out)
{
    const int8_t *lut = p->lut + 128;
    uint32_t i = 0;
    for (; i + 3 < p->size; i += 4) {
        out[i] = lut[in[i]];
        out[i + 1] = lut[in[i + 1]];
        out[i + 2] = lut[in[i + 2]];
        out[i + 3] = lut[in[i + 3]];
    }
    for (; i < p->size; ++i) out[i] = lut[in[i]];
}
