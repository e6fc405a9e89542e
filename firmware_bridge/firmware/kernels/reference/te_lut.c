/* Element-wise 256-entry table lookup (LOGISTIC), int8 (reference). */
#include "te_kernels.h"

void te_lut_s8(const te_lut_params_t *p, const int8_t *in, int8_t *out)
{
    for (uint32_t i = 0; i < p->size; ++i) out[i] = p->lut[in[i] + 128];
}
