/* Self-test application: runs every segment of the linked model on a fixed
 * pseudo-random input, prints ticks per segment and per layer as text on the
 * UART, and exits with status 0 (semihosting under QEMU).  Used to measure
 * kernels without the protocol: `make APP=selftest`. */
#include <stdint.h>

#include "port.h"
#include "te_model.h"

extern const te_model_t TE_MODEL;
extern uint32_t te_stack_used(void);

static int8_t arena[TE_ARENA_BYTES] __attribute__((aligned(8)));
static uint64_t layer_ticks[512];
static uint64_t layer_start;

void te_layer_done(uint16_t layer)
{
    const uint64_t now = port_ticks();
    if (layer < 512) layer_ticks[layer] += now - layer_start;
    layer_start = port_ticks();
}

static void puts_(const char *s)
{
    while (*s) port_uart_putc((uint8_t)*s++);
}

static void putu(uint64_t v)
{
    char buf[24];
    int n = 0;
    do { buf[n++] = (char)('0' + v % 10); v /= 10; } while (v);
    while (n) port_uart_putc((uint8_t)buf[--n]);
}

int main(void)
{
    port_init();
    const te_model_t *m = &TE_MODEL;
    const int repeats = 4;
    uint32_t state = 12345u;
    const te_segment_t *s0 = &m->segments[0];
    uint64_t seg_ticks[16] = {0};
    for (int r = 0; r < repeats; ++r) {
        for (uint32_t i = 0; i < s0->in_bytes; ++i) {
            state = state * 1664525u + 1013904223u;
            arena[s0->in_offset + i] = (int8_t)(state >> 24);
        }
        for (int k = 0; k < m->num_segments; ++k) {
            layer_start = port_ticks();
            const uint64_t t0 = layer_start;
            m->segments[k].run(arena);
            seg_ticks[k] += port_ticks() - t0;
            port_watchdog_feed();
        }
    }
    puts_("model ");
    puts_(m->name);
    puts_(" tick_hz ");
    putu(port_tick_hz());
    puts_(" repeats ");
    putu((uint64_t)repeats);
    puts_("\n");
    for (int k = 0; k < m->num_segments; ++k) {
        puts_("segment ");
        putu((uint64_t)k);
        puts_(" ticks ");
        putu(seg_ticks[k]);
        puts_(" macs ");
        putu(m->segments[k].macs);
        puts_("\n");
    }
    for (int l = 0; l < m->num_layers && l < 512; ++l) {
        puts_("layer ");
        puts_(m->layer_names[l]);
        puts_(" ticks ");
        putu(layer_ticks[l]);
        puts_(" macs ");
        putu(m->layer_macs[l]);
        puts_("\n");
    }
    puts_("stack_used ");
    putu(te_stack_used());
    puts_("\ndone\n");
    port_exit(0);
    return 0;
}
