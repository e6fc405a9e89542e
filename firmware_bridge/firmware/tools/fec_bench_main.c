/* Bare-metal measurement: the instructions the device spends receiving one FEC frame with a 100-byte payload
 * (core/te_fec.c), clean, with 3 corrupted bytes, and with one byte dropped in its last block (the worst
 * place: the search tries every place of that block).  Each case feeds the body byte by byte through the
 * device's receiver (te_rx_feed, as te_main.c does) between two port_ticks(); under QEMU -icount shift=0 a
 * 25 MHz tick is 40 instructions.  Prints "<case> <ticks> <ok>" lines, then exits 0.  Build and run:
 * tests/firmware/test_fec_c.py::test_decode_cost_on_qemu (or see its commands). */
#include <stdint.h>
#include <string.h>

#include "port.h"
#include "te_fec.h"

static te_rx_t rx;
static uint8_t raw[TX_HEADER_SIZE + 100 + TX_CRC_SIZE], wire[TE_FEC_MAX_BODY + 2];
static size_t wire_len;

void te_layer_done(uint16_t layer) { (void)layer; }

static void put(uint8_t b)
{
    if (wire_len < sizeof wire) wire[wire_len++] = b;
}

static void puts_(const char *s)
{
    while (*s) port_uart_putc((uint8_t)*s++);
}

static void putu(uint32_t v)
{
    char buf[12];
    int i = 11;
    buf[i] = 0;
    do {
        buf[--i] = (char)('0' + v % 10u);
        v /= 10u;
    } while (v);
    puts_(buf + i);
}

/* One body (delimiters included) through the receiver: ticks spent, and whether it gave back the frame. */
static void measure(const char *name, const uint8_t *body, size_t n)
{
    te_frame_t f;
    te_status_t err;
    int ok = 0;
    te_rx_feed(&rx, TX_DELIMITER, &f, &err);
    const uint64_t t0 = port_ticks();
    for (size_t i = 0; i < n; ++i)
        if (te_rx_feed(&rx, body[i], &f, &err) == TE_FEED_FRAME)
            ok = f.fec && f.length == 100 && memcmp(f.payload, raw + TX_HEADER_SIZE, 100) == 0;
    const uint64_t t1 = port_ticks();
    puts_(name);
    puts_(" ");
    putu((uint32_t)(t1 - t0));
    puts_(ok ? " ok\n" : " FAILED\n");
}

int main(void)
{
    static uint8_t hit[sizeof wire + 1];
    uint8_t payload[100];
    port_init();
    te_rx_init(&rx, TE_MAX_PAYLOAD);
    for (int i = 0; i < 100; ++i) payload[i] = (uint8_t)(i * 37 + 11);
    const size_t n = te_frame_build(raw, sizeof raw, TX_MSG_LOAD_INPUT, 7, payload, 100);
    te_fec_send(raw, n, 0, put); /* 3 keys, 3 codewords of 45 bytes (37 + 8), the delimiter */
    measure("clean", wire, wire_len);
    memcpy(hit, wire, wire_len);
    hit[3 + 5] ^= 0x21; /* one corrupted byte in each block */
    hit[3 + 45 + 20] ^= 0x42;
    hit[3 + 90 + 40] ^= 0x84;
    for (size_t i = 0; i < wire_len - 1; ++i) hit[i] = hit[i] ? hit[i] : 1;
    measure("corrupt3", hit, wire_len);
    memcpy(hit, wire, wire_len);
    memmove(hit + wire_len - 2, hit + wire_len - 1, 1); /* the last codeword byte lost */
    measure("drop_last", hit, wire_len - 1);
    memcpy(hit, wire, wire_len);
    memmove(hit + 3 + 90, hit + 3 + 91, wire_len - 3 - 91); /* the first byte of the last block lost */
    measure("drop_last_block_first", hit, wire_len - 1);
    puts_("done\n");
    port_exit(0);
    return 0;
}
