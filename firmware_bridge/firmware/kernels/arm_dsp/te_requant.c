/* QUANTIZE int8 -> int8 and plain copies (RESHAPE), for cores with the DSP extension. */
#include <string.h>

#include "te_kernels.h"
#include "te_dsp.h"

void te_requant_s8(const te_requant_params_t *p, const int8_t *in, int8_t *out)
{
    for (uint32_t i = 0; i < p->size; ++i) out[i] = te_requant(in[i] - p->in_zp, p->mult, p->shift, p->out_zp, -128, 127);
}

void te_copy_s8(uint32_t size, const int8_t *in, int8_t *out)
{
    if (in != out) memmove(out, in, size);
}
