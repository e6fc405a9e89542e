/* Host tool: the firmware's FEC code (core/te_fec.c) behind a line protocol on stdin/stdout, so the
 * tests compare it byte for byte with the Python reference (firmware_bridge/protocol/fec.py).
 * One request per line, one answer line each ("-" = none):
 *   E <raw hex>              wire bytes of the frame FEC-encoded, trailing delimiter included, no lead
 *   D <body hex>             the raw frame te_fec_decode recovers from one body (no delimiters)
 *   W <wire hex>             te_rx_feed over the bytes: events "F<fec>:<raw hex>" / "E:<status name>", by spaces
 *   P <np> <data hex>        the np Reed-Solomon parity bytes of one block
 *   C <np> <erasure> <hex>   one codeword corrected (erasure -1: none) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "te_fec.h"

#define LINE 8192

static uint8_t out[4 * LINE];
static size_t out_len;
static te_rx_t rx;

static void put(uint8_t b)
{
    if (out_len < sizeof out) out[out_len++] = b;
}

static size_t unhex(const char *s, uint8_t *dst, size_t cap)
{
    size_t n = 0;
    unsigned v;
    while (n < cap && sscanf(s, "%2x", &v) == 1) {
        dst[n++] = (uint8_t)v;
        s += 2;
    }
    return n;
}

static void hex(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; ++i) printf("%02x", p[i]);
}

static int accept_frame(const uint8_t *raw, size_t n, void *ctx)
{
    te_frame_t f;
    (void)ctx;
    return te_frame_parse(raw, n, TX_MAX_PAYLOAD, &f) == TE_OK;
}

int main(void)
{
    static char line[2 * LINE + 64];
    static uint8_t buf[LINE], raw[TE_FEC_MAX_RAW];
    te_rx_init(&rx, TX_MAX_PAYLOAD);
    while (fgets(line, sizeof line, stdin)) {
        char *arg = line + 2;
        size_t n;
        int np, erasure, used;
        out_len = 0;
        switch (line[0]) {
        case 'E':
            n = unhex(arg, buf, sizeof buf);
            if (te_fec_send(buf, n, 0, put)) hex(out, out_len);
            else printf("-");
            break;
        case 'D':
            n = unhex(arg, buf, sizeof buf);
            n = te_fec_decode(buf, n, raw, accept_frame, NULL);
            if (n) hex(raw, n);
            else printf("-");
            break;
        case 'W':
            n = unhex(arg, buf, sizeof buf);
            for (size_t i = 0; i < n; ++i) {
                te_frame_t f;
                te_status_t err;
                const int ev = te_rx_feed(&rx, buf[i], &f, &err);
                if (ev == TE_FEED_FRAME) {
                    printf("F%u:", f.fec);
                    hex(f.payload - TX_HEADER_SIZE, TX_HEADER_SIZE + f.length + TX_CRC_SIZE);
                    printf(" ");
                } else if (ev == TE_FEED_ERROR) {
                    printf("E:%s ", te_status_name(err));
                }
            }
            break;
        case 'P':
            if (sscanf(arg, "%d %n", &np, &used) != 1 || (np != 4 && np != 6 && np != 8)) return 2;
            n = unhex(arg + used, buf, 255u - (size_t)np);
            te_rs_encode(buf, n, raw, (size_t)np);
            hex(raw, (size_t)np);
            break;
        case 'C':
            if (sscanf(arg, "%d %d %n", &np, &erasure, &used) != 2 || np < 2 || np > 8) return 2;
            n = unhex(arg + used, buf, 255);
            if (te_rs_decode(buf, n, (size_t)np, erasure)) hex(buf, n);
            else printf("-");
            break;
        default:
            return 2;
        }
        printf("\n");
        fflush(stdout);
    }
    return 0;
}
