/* On-device sampling for the binary denoiser: a whole T-step reverse
 * diffusion runs on the device and only the final image crosses the link.
 *
 * From fair coins y_T, for t = T..1 (i = t - 1): feed [y_t, values[i]]
 * (quantized) to segments 0..exit_schedule[i], dequantize that exit's
 * logits r, z = r (+ marginal[j] + y*obs_log_odds[i] with prior_residual;
 * only that sum for the zero-compute exit -1), p = sigmoid(z),
 * P = p*A[i] + (1 - p)*B[i] with A, B chosen by y, and y_{t-1}[j] = +1 iff
 * u < P for a uniform u from the seeded generator (te_sampler_uniform).
 * Constants come from manifest.json "denoiser" (models/denoiser.py
 * device_constants); firmware_bridge/harness/sampler.py is the host twin. */
#ifndef TE_SAMPLER_H
#define TE_SAMPLER_H

#include <stdint.h>

#include "te_model.h"

typedef struct {
    uint16_t T, pixels;             /* steps; H*W */
    const float *plane;             /* [T] timestep plane value of step t at [t-1] */
    const float *a_neg, *a_pos;     /* [T] P(Y_{t-1}=+1 | y_t = -1/+1, x0 = +1) */
    const float *b_neg, *b_pos;     /* [T] ... x0 = -1 */
    const float *marginal;          /* [pixels] marginal logits */
    const float *obs_log_odds;      /* [T] */
    const int8_t *exit_schedule;    /* [T] exit of step t at [t-1]; -1 = zero-compute */
    uint8_t prior_residual;
    float in_scale;
    int32_t in_zp;
} te_sampler_t;

/* xorshift32 state -> uniform float in [0, 1) with 24 random bits. */
float te_sampler_uniform(uint32_t *state);

/* Generate one image (pixels bytes of +1/-1 as int8) with `seed`; ticks
 * spent in the network and in the sampling arithmetic are added to *net and
 * *math.  The arena must hold the model's arena. */
void te_sampler_generate(const te_sampler_t *s, const te_model_t *m, int8_t *arena, uint32_t seed, int8_t *image,
                         uint64_t *net, uint64_t *math);

#endif
