/* What one firmware image carries: the segmented model, optional monolithic
 * models for MODE_FULL, the shared arena and input buffer.  The instance,
 * te_models, is generated per run by firmware_build.py (te_models.c). */
#ifndef TE_MODELS_H
#define TE_MODELS_H

#include <stdint.h>

#include "te_model.h"
#include "te_sampler.h"

typedef struct {
    const te_model_t *segments;    /* the exit segments, in order */
    const te_model_t *full;        /* FULL_DEPTH: the whole network, one segment; NULL if absent */
    const te_model_t *all_exits;   /* FULL_ALL_EXITS: every head in one subgraph; NULL if absent */
    int8_t *arena;                 /* shared by all models, 8-byte aligned */
    uint32_t arena_bytes;
    uint8_t *input;                /* LOAD_INPUT writes here; RUN reads slot * input bytes */
    uint32_t input_capacity;
    uint8_t artifact_hash[32];     /* raw sha256 from manifest.json */
    const char *runtime_name;      /* e.g. "tinyexit-c arm_dsp" */
    const te_sampler_t *sampler;   /* the denoiser's on-device sampler; NULL for other models */
} te_firmware_models_t;

extern const te_firmware_models_t te_models;

#endif
