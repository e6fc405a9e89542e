/* QUANTIZE int8 -> int8 and plain copies (RESHAPE), reference. */
#include "te_kernels.h"
#include "te_fixedpoint.h"

void te_requant_s8(const te_requant_params_t *p, const int8_t *in, int8_t *out)
{
    for (uint32_t i = 0; i < p->size; ++i)
        out[i] = te_clamp8(te_mbqm(in[i] - p->in_zp, p->mult, p->shift) + p->out_zp, -128, 127);
}

void te_copy_s8(uint32_t size, const int8_t *in, int8_t *out)
{
    for (uint32_t i = 0; i < size; ++i) out[i] = in[i];
}
