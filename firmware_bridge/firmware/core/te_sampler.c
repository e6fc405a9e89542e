/* The denoiser's reverse process on the device (see te_sampler.h). */
#include "te_sampler.h"

#include <math.h>

#include "port.h"

float te_sampler_uniform(uint32_t *state)
{
    uint32_t x = *state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *state = x;
    return (float)(x >> 8) * (1.0f / 16777216.0f);
}

static int8_t quantize(float v, float scale, int32_t zp)
{
    const int32_t q = (int32_t)roundf(v / scale) + zp; /* TFLite: round half away from zero */
    return (int8_t)(q < -128 ? -128 : (q > 127 ? 127 : q));
}

void te_sampler_generate(const te_sampler_t *s, const te_model_t *m, int8_t *arena, uint32_t seed, int8_t *image,
                         uint64_t *net, uint64_t *math)
{
    uint32_t state = seed ? seed : 0x9E3779B9u; /* xorshift must not start at 0 */
    for (int j = 0; j < s->pixels; ++j) image[j] = te_sampler_uniform(&state) < 0.5f ? 1 : -1;
    const int8_t q_pos = quantize(1.0f, s->in_scale, s->in_zp), q_neg = quantize(-1.0f, s->in_scale, s->in_zp);
    for (int t = s->T; t >= 1; --t) {
        const int i = t - 1, k = s->exit_schedule[i];
        const int8_t *logits = 0;
        float scale = 0.0f;
        int32_t zp = 0;
        if (k >= 0) {
            const uint64_t t0 = port_ticks_restart();
            int8_t *x = arena + m->segments[0].in_offset;
            const int8_t q_plane = quantize(s->plane[i], s->in_scale, s->in_zp);
            for (int j = 0; j < s->pixels; ++j) {
                x[2 * j] = image[j] > 0 ? q_pos : q_neg;
                x[2 * j + 1] = q_plane;
            }
            for (int seg = 0; seg <= k; ++seg) {
                m->segments[seg].run(arena);
                port_watchdog_feed();
            }
            logits = arena + m->segments[k].logits_offset;
            scale = m->segments[k].logits_scale;
            zp = m->segments[k].logits_zp;
            *net += port_ticks() - t0;
        }
        const uint64_t t1 = port_ticks_restart();
        for (int j = 0; j < s->pixels; ++j) {
            const float y = image[j] > 0 ? 1.0f : -1.0f;
            const float prior = s->marginal[j] + y * s->obs_log_odds[i];
            float z = prior;
            if (logits) z = (float)(logits[j] - zp) * scale + (s->prior_residual ? prior : 0.0f);
            const float p = 1.0f / (1.0f + expf(-z));
            const float a = y > 0 ? s->a_pos[i] : s->a_neg[i], b = y > 0 ? s->b_pos[i] : s->b_neg[i];
            const float prob = p * a + (1.0f - p) * b;
            image[j] = te_sampler_uniform(&state) < prob ? 1 : -1;
        }
        *math += port_ticks() - t1;
    }
}
