/* The interface between generated model code and the firmware core.
 *
 * export/codegen.py emits, per model, one function per exit segment
 * (<model>_exit<k>_run) and a te_model_t describing the static memory plan:
 * every tensor lives at a fixed offset of one arena; a segment's input and
 * the previous segment's features are the same bytes (kept in place).  The
 * arena itself belongs to the caller, so several models can share one. */
#ifndef TE_MODEL_H
#define TE_MODEL_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef void (*te_segment_fn)(int8_t *arena);

typedef struct {
    te_segment_fn run;
    uint32_t in_offset, in_bytes;        /* where the segment reads its input */
    uint32_t logits_offset;              /* valid after run() until the next segment runs */
    uint16_t num_classes;
    uint32_t feat_offset, feat_bytes;    /* features for the next segment (0 bytes: last) */
    float logits_scale;
    int32_t logits_zp;
    uint16_t first_layer, num_layers;    /* global layer indices, for per-layer timing */
    uint32_t macs;
} te_segment_t;

typedef struct {
    const char *name;                    /* "classifier", "denoiser" */
    const char *artifact_hash;           /* manifest artifact_hash (hex), "" if unknown */
    const char *source_sha256;           /* sha256 over the per-segment .tflite files */
    uint32_t arena_bytes;                /* the caller provides an arena this large, 8-byte aligned */
    uint16_t num_segments;
    const te_segment_t *segments;
    uint16_t num_layers;
    const char *const *layer_names;      /* "<op index>:<TFLite op>" per layer */
    const uint32_t *layer_macs;
} te_model_t;

/* Called by generated code after every layer; the core records per-layer
 * ticks when asked to (a host build may define it as a no-op). */
void te_layer_done(uint16_t layer);

#ifdef __cplusplus
}
#endif
#endif
