/* SOFTMAX int8 -> int8 over the last axis (arm_dsp: the CLZ instruction); te_softmax_rows.h. */
#include "te_softmax_rows.h"

static int clz32(uint32_t x) { return __builtin_clz(x); }

void te_softmax_s8(const te_softmax_params_t *p, const int8_t *in, int8_t *out) { te_softmax_rows(p, in, out, clz32); }
