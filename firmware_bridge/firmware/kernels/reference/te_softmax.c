/* SOFTMAX int8 -> int8 over the last axis (reference: leading zeros counted by a portable loop);
 * te_softmax_rows.h. */
#include "te_softmax_rows.h"

static int clz32(uint32_t x)
{
    int n = 0;
    while (n < 32 && !(x & 0x80000000u)) {
        x <<= 1;
        ++n;
    }
    return n;
}

void te_softmax_s8(const te_softmax_params_t *p, const int8_t *in, int8_t *out) { te_softmax_rows(p, in, out, clz32); }
