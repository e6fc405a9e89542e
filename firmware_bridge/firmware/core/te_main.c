/* tinyexit firmware: serve the protocol on the port's UART forever.
 *
 * Boot: port_init, an unsolicited INFO (with a leading delimiter so a host
 * drops whatever partial frame it held), then one byte at a time through the
 * receiver (COBS, then FEC: te_fec.h); each frame gets exactly one reply frame,
 * in the encoding the request arrived in, each rejected frame a NACK (ERROR
 * with SEQ_UNSOLICITED, plain COBS like the boot INFO). */
#include <stdint.h>

#include "port.h"
#include "te_device.h"
#include "te_fec.h"

static te_device_t device;
static te_rx_t receiver;
static volatile uint16_t layer_profile_on; /* per-layer timing, off unless a build turns it on */
static uint64_t layer_mark;

#ifdef TE_LAYER_PROFILE
uint64_t te_layer_ticks[TE_LAYER_PROFILE];
#endif

void te_layer_done(uint16_t layer)
{
#ifdef TE_LAYER_PROFILE
    if (layer_profile_on) {
        const uint64_t now = port_ticks();
        if (layer < TE_LAYER_PROFILE) te_layer_ticks[layer] += now - layer_mark;
        layer_mark = port_ticks();
    }
#else
    (void)layer;
    (void)layer_mark;
    (void)layer_profile_on;
#endif
}

/* fec: FEC-encoded if the frame fits (te_fec.h), else COBS. */
static void send(const uint8_t *raw, size_t n, int lead, int fec)
{
    if (!fec || !te_fec_send(raw, n, lead, port_uart_putc)) te_frame_send(raw, n, lead, port_uart_putc);
    port_uart_flush();
}

/* Last words before a fault exit (called from the port's fault handlers). */
void te_fatal_report(int status, const char *what)
{
    (void)status;
    const uint8_t *raw;
    te_device_t *d = &device;
    uint8_t body[TX_ERROR_FIXED_SIZE + TX_MAX_ERROR_TEXT];
    size_t n = 0;
    while (what[n] && n < TX_MAX_ERROR_TEXT) n++;
    te_put16(body, TE_DEV_INTERNAL);
    body[2] = (uint8_t)n;
    for (size_t i = 0; i < n; ++i) body[TX_ERROR_FIXED_SIZE + i] = (uint8_t)what[i];
    raw = d->nack;
    n = te_frame_build(d->nack, sizeof d->nack, TX_MSG_ERROR, TX_SEQ_UNSOLICITED, body,
                       (uint16_t)(TX_ERROR_FIXED_SIZE + n));
    send(raw, n, 1, 0);
}

/* Differs between boots on a real board; under QEMU with -icount it is the same
 * every time, and the boot INFO itself tells the host the device restarted. */
static uint32_t __attribute__((section(".noinit"))) boot_count;

int main(void)
{
    port_init();
    boot_count++;
    const uint64_t t = port_ticks();
    te_device_init(&device, &te_models, (uint32_t)t ^ (uint32_t)(t >> 32) ^ (boot_count * 2654435761u));
    te_rx_init(&receiver, TE_MAX_PAYLOAD);
    const uint8_t *raw;
    size_t n = te_device_boot_info(&device, &raw);
    send(raw, n, 1, 0);
    for (;;) {
        const int c = port_uart_getc();
        if (c < 0) {
            port_watchdog_feed();
            port_idle();
            continue;
        }
        te_frame_t frame;
        te_status_t error;
        switch (te_rx_feed(&receiver, (uint8_t)c, &frame, &error)) {
        case TE_FEED_FRAME:
            if (frame.type == TX_MSG_EXIT && frame.length == 0) port_exit(0);
            n = te_device_handle(&device, &frame, &raw);
            send(raw, n, 0, frame.fec);
            break;
        case TE_FEED_ERROR:
            n = te_device_nack(&device, error, &raw);
            send(raw, n, 0, 0);
            break;
        default:
            break;
        }
    }
}
