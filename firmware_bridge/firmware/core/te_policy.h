/* Exit policies on the device (ids shared with tinyexit.exit_policy):
 *   0 max_softmax  leave at exit k when max softmax(logits_k) >= t          params [t]
 *   1 entropy      when entropy(softmax)/ln(C) <= t                          params [t]
 *   2 patience     when argmax is unchanged for p consecutive exits          params [p]
 *   3 calibrated   when max softmax >= t_k (the last t for later exits)      params [t_0, t_1, ...]
 * Softmax runs in single precision on dequantized int8 logits; the host's
 * reference uses double, so the two can only disagree for a confidence within
 * about 1e-6 of the threshold. */
#ifndef TE_POLICY_H
#define TE_POLICY_H

#include <stdint.h>

#include "te_status.h"

typedef struct {
    uint8_t id;
    uint8_t n_params;
    float params[TX_MAX_POLICY_PARAMS];
} te_policy_t;

/* TE_REQ_BAD_POLICY for an unknown id, TE_REQ_BAD_PARAMS for parameters the
 * Python ExitPolicy would refuse (none, a threshold outside [0, 1], a
 * patience that is not a whole number >= 1). */
te_status_t te_policy_check(const te_policy_t *p);

/* Does the sample leave at exit k?  top1[0..k] are the argmax of exits 0..k
 * (for patience); logits are exit k's int8 logits with their quantization. */
int te_policy_passes(const te_policy_t *p, int k, const int8_t *logits, int n, float scale, int32_t zp,
                     const uint8_t *top1);

/* Index of the largest logit (the first one on ties, as numpy's argmax). */
int te_argmax(const int8_t *logits, int n);

#endif
