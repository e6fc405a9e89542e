/* Exit policies, evaluated on the device after each segment (see te_policy.h). */
#include "te_policy.h"

#include <math.h>

te_status_t te_policy_check(const te_policy_t *p)
{
    TE_CHECK(p->id <= TX_POLICY_CALIBRATED, TE_REQ_BAD_POLICY);
    TE_CHECK(p->n_params >= 1 && p->n_params <= TX_MAX_POLICY_PARAMS, TE_REQ_BAD_PARAMS);
    for (int i = 0; i < p->n_params; ++i) {
        const float v = p->params[i];
        TE_CHECK(isfinite(v), TE_REQ_BAD_PARAMS);
        if (p->id == TX_POLICY_PATIENCE) {
            /* any whole number >= 1, as ExitPolicy accepts; te_policy_passes never converts one larger
             * than the segment count to an int (that conversion would overflow) */
            if (i == 0) TE_CHECK(v >= 1.0f && v == floorf(v), TE_REQ_BAD_PARAMS);
        } else {
            TE_CHECK(v >= 0.0f && v <= 1.0f, TE_REQ_BAD_PARAMS);
        }
    }
    return TE_OK;
}

int te_argmax(const int8_t *logits, int n)
{
    int best = 0;
    for (int i = 1; i < n; ++i)
        if (logits[i] > logits[best]) best = i;
    return best;
}

/* S = sum exp(d_i) and W = sum exp(d_i) * d_i with d_i = z_i - z_max (no
 * per-logit storage: the device keeps only two floats). */
static void softmax_sums(const int8_t *q, int n, float scale, float *s, float *w)
{
    const int top = te_argmax(q, n);
    float sum = 0.0f, wsum = 0.0f;
    for (int i = 0; i < n; ++i) {
        const float d = (float)(q[i] - q[top]) * scale;
        const float e = expf(d);
        sum += e;
        wsum += e * d;
    }
    *s = sum;
    *w = wsum;
}

static float max_softmax(const int8_t *q, int n, float scale)
{
    float s, w;
    softmax_sums(q, n, scale, &s, &w);
    return 1.0f / s;
}

/* -sum p_i ln p_i = ln S - W / S for p_i = exp(d_i) / S. */
static float normalized_entropy(const int8_t *q, int n, float scale)
{
    float s, w;
    softmax_sums(q, n, scale, &s, &w);
    return n > 1 ? (logf(s) - w / s) / logf((float)n) : 0.0f;
}

int te_policy_passes(const te_policy_t *p, int k, const int8_t *logits, int n, float scale, int32_t zp,
                     const uint8_t *top1)
{
    (void)zp; /* softmax is shift-invariant: only differences of logits matter */
    switch (p->id) {
    case TX_POLICY_MAX_SOFTMAX:
        return max_softmax(logits, n, scale) >= p->params[0];
    case TX_POLICY_ENTROPY:
        return normalized_entropy(logits, n, scale) <= p->params[0];
    case TX_POLICY_CALIBRATED:
        return max_softmax(logits, n, scale) >= p->params[k < p->n_params ? k : p->n_params - 1];
    case TX_POLICY_PATIENCE: {
        if (p->params[0] > (float)(k + 1)) return 0; /* fewer exits so far than the patience */
        const int need = (int)p->params[0];
        for (int j = k + 1 - need; j < k; ++j)
            if (top1[j] != top1[k]) return 0;
        return 1;
    }
    default:
        return 0;
    }
}
