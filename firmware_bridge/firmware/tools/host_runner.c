/* Host tier: the generated model and one kernel set, compiled with the host
 * compiler and driven over stdin/stdout by the tests (no protocol, no port).
 *
 * Request (little-endian): "TER1", u32 segment, u32 count, u32 chain, then
 * count inputs.  chain == 0: each input is segment `segment`'s input; reply
 * per input = its logits then its features (if any).  chain == 1: each input
 * is the model input; segments 0..segment run chained through the arena and
 * the reply is every executed segment's logits.  Repeats until EOF.
 * Build: see tinyexit/firmware_bridge/firmware/host.py (host gcc, one kernel set).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "te_model.h"

#ifndef TE_MODEL
#error "define TE_MODEL as the generated model's descriptor, e.g. -DTE_MODEL=classifier_model"
#endif
extern const te_model_t TE_MODEL;

void te_layer_done(uint16_t layer) { (void)layer; }

static int8_t arena[1 << 20] __attribute__((aligned(8)));

static int read_exact(void *buf, size_t n) { return fread(buf, 1, n, stdin) == n; }

static uint32_t u32le(const uint8_t *b) { return b[0] | (b[1] << 8) | (b[2] << 16) | ((uint32_t)b[3] << 24); }

static void emit(const int8_t *p, uint32_t n) { fwrite(p, 1, n, stdout); }

int main(void)
{
    const te_model_t *m = &TE_MODEL;
    if (m->arena_bytes > sizeof arena) { fprintf(stderr, "host_runner: arena too large\n"); return 2; }
    uint8_t hdr[16];
    while (read_exact(hdr, sizeof hdr)) {
        if (memcmp(hdr, "TER1", 4) != 0) { fprintf(stderr, "host_runner: bad magic\n"); return 2; }
        const uint32_t seg = u32le(hdr + 4), count = u32le(hdr + 8), chain = u32le(hdr + 12);
        if (seg >= m->num_segments) { fprintf(stderr, "host_runner: segment %u out of range\n", seg); return 2; }
        const te_segment_t *first = &m->segments[chain ? 0 : seg];
        for (uint32_t n = 0; n < count; ++n) {
            if (!read_exact(arena + first->in_offset, first->in_bytes)) {
                fprintf(stderr, "host_runner: short input\n");
                return 2;
            }
            for (uint32_t k = chain ? 0 : seg; k <= seg; ++k) {
                const te_segment_t *s = &m->segments[k];
                s->run(arena);
                emit(arena + s->logits_offset, s->num_classes);
                if (!chain && s->feat_bytes) emit(arena + s->feat_offset, s->feat_bytes);
            }
        }
        fflush(stdout);
    }
    return 0;
}
