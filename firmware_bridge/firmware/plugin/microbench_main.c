/* Microbenchmark application: every linked single-operator model runs once
 * between two port_ticks() calls, so the te_count plugin (mark=port_ticks)
 * writes one pair of count lines per model; an empty call first gives the
 * interval's own overhead.  Built by tinyexit.firmware_bridge.firmware.plugin
 * (build_microbench) from export/microbench.py's generated C; the kernels,
 * port and generated code are the firmware's own.  Prints "done" and exits 0. */
#include <stdint.h>

#include "port.h"
#include "te_model.h"

extern const te_model_t *const te_mb_models[];
extern const uint32_t te_mb_count;

static int8_t arena[TE_ARENA_BYTES] __attribute__((aligned(8)));

/* The protocol firmware's hook costs a call and a return per layer; so does this one. */
void te_layer_done(uint16_t layer)
{
    __asm__ volatile("" ::"r"(layer));
}

static void empty_segment(int8_t *a)
{
    __asm__ volatile("" ::"r"(a) : "memory");
}

static void puts_(const char *s)
{
    while (*s) port_uart_putc((uint8_t)*s++);
}

int main(void)
{
    port_init();
    te_segment_fn volatile empty = empty_segment;
    (void)port_ticks();
    empty(arena);
    (void)port_ticks();
    uint32_t state = 12345u;
    for (uint32_t i = 0; i < te_mb_count; ++i) {
        const te_segment_t *s = &te_mb_models[i]->segments[0];
        for (uint32_t j = 0; j < s->in_bytes; ++j) {
            state = state * 1664525u + 1013904223u;
            arena[s->in_offset + j] = (int8_t)(state >> 24);
        }
        (void)port_ticks();
        s->run(arena);
        (void)port_ticks();
        port_watchdog_feed();
    }
    puts_("done\n");
    port_exit(0);
    return 0;
}
