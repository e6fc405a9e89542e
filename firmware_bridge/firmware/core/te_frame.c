/* COBS framing and CRC-32 of the tinyexit protocol (see te_frame.h). */
#include "te_frame.h"

#include <string.h>

/* CRC-32/ISO-HDLC (zlib), reflected polynomial 0xEDB88320, one nibble per
 * table step: 64 bytes of table instead of 1 KiB. */
static const uint32_t crc_nibble[16] = {
    0x00000000u, 0x1DB71064u, 0x3B6E20C8u, 0x26D930ACu, 0x76DC4190u, 0x6B6B51F4u, 0x4DB26158u, 0x5005713Cu,
    0xEDB88320u, 0xF00F9344u, 0xD6D6A3E8u, 0xCB61B38Cu, 0x9B64C2B0u, 0x86D3D2D4u, 0xA00AE278u, 0xBDBDF21Cu,
};

uint32_t te_crc32(const uint8_t *data, size_t n, uint32_t crc)
{
    crc = ~crc;
    for (size_t i = 0; i < n; ++i) {
        crc ^= data[i];
        crc = (crc >> 4) ^ crc_nibble[crc & 0xFu];
        crc = (crc >> 4) ^ crc_nibble[crc & 0xFu];
    }
    return ~crc;
}

static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static void restart(te_decoder_t *d)
{
    d->raw_len = 0;
    d->encoded = 0;
    d->block_left = 0;
    d->pending_zero = 0;
}

void te_decoder_init(te_decoder_t *d, uint16_t max_payload)
{
    if (max_payload > TE_MAX_PAYLOAD) max_payload = TE_MAX_PAYLOAD;
    if (max_payload < TX_MIN_DEVICE_PAYLOAD) max_payload = TX_MIN_DEVICE_PAYLOAD;
    d->max_payload = max_payload;
    d->limit = TE_MAX_ENCODED(max_payload);
    d->overflow = 0;
    restart(d);
}

te_status_t te_frame_parse(const uint8_t *raw, size_t n, uint16_t max_payload, te_frame_t *f)
{
    TE_CHECK(n >= TX_HEADER_SIZE + TX_CRC_SIZE, TE_FRAME_SHORT);
    const uint16_t length = get16(raw + 4);
    TE_CHECK(length <= max_payload, TE_FRAME_TOO_LONG);
    TE_CHECK(length == n - TX_HEADER_SIZE - TX_CRC_SIZE, TE_FRAME_LENGTH);
    const uint32_t crc = te_crc32(raw, n - TX_CRC_SIZE, 0);
    TE_CHECK(crc == get32(raw + n - TX_CRC_SIZE), TE_FRAME_CRC);
    TE_CHECK(raw[0] == TX_PROTOCOL_VERSION, TE_FRAME_VERSION);
    f->type = raw[1];
    f->seq = get16(raw + 2);
    f->length = length;
    f->payload = raw + TX_HEADER_SIZE;
    f->crc = crc;
    f->fec = 0;
    return TE_OK;
}

int te_decoder_feed(te_decoder_t *d, uint8_t byte, te_frame_t *frame, te_status_t *error)
{
    if (byte == TX_DELIMITER) {
        if (d->overflow) { /* already reported when it overflowed */
            d->overflow = 0;
            restart(d);
            return TE_FEED_NONE;
        }
        if (d->encoded == 0) return TE_FEED_NONE; /* empty frames are silent */
        te_status_t st = TE_FRAME_COBS;
        if (!d->block_left) st = te_frame_parse(d->raw, d->raw_len, d->max_payload, frame);
        restart(d);
        if (st == TE_OK) return TE_FEED_FRAME;
        *error = st;
        return TE_FEED_ERROR;
    }
    if (d->overflow) return TE_FEED_NONE;
    if (++d->encoded > d->limit) {
        restart(d);
        d->overflow = 1;
        *error = TE_FRAME_TOO_LONG;
        return TE_FEED_ERROR;
    }
    /* raw_len < encoded <= limit = sizeof raw: every write below is in bounds */
    if (d->block_left == 0) { /* a COBS code byte */
        if (d->pending_zero) d->raw[d->raw_len++] = 0;
        d->block_left = (uint8_t)(byte - 1u);
        d->pending_zero = byte != 0xFFu;
        return TE_FEED_NONE;
    }
    d->raw[d->raw_len++] = byte;
    d->block_left--;
    return TE_FEED_NONE;
}

size_t te_frame_build(uint8_t *out, size_t capacity, uint8_t type, uint16_t seq, const uint8_t *payload,
                      uint16_t length)
{
    const size_t n = TX_HEADER_SIZE + (size_t)length + TX_CRC_SIZE;
    if (n > capacity) return 0;
    out[0] = TX_PROTOCOL_VERSION;
    out[1] = type;
    out[2] = (uint8_t)seq;
    out[3] = (uint8_t)(seq >> 8);
    out[4] = (uint8_t)length;
    out[5] = (uint8_t)(length >> 8);
    if (length && payload != out + TX_HEADER_SIZE) memmove(out + TX_HEADER_SIZE, payload, length);
    const uint32_t crc = te_crc32(out, TX_HEADER_SIZE + (size_t)length, 0);
    for (int i = 0; i < 4; ++i) out[TX_HEADER_SIZE + length + i] = (uint8_t)(crc >> (8 * i));
    return n;
}

void te_frame_send(const uint8_t *raw, size_t n, int lead, void (*put)(uint8_t))
{
    if (lead) put(TX_DELIMITER);
    size_t start = 0;
    for (size_t i = 0; i < n; ++i) {
        if (raw[i] == 0) {
            put((uint8_t)(i - start + 1));
            for (size_t j = start; j < i; ++j) put(raw[j]);
            start = i + 1;
        } else if (i + 1 - start == 254) {
            put(0xFFu);
            for (size_t j = start; j <= i; ++j) put(raw[j]);
            start = i + 1;
        }
    }
    put((uint8_t)(n - start + 1));
    for (size_t j = start; j < n; ++j) put(raw[j]);
    put(TX_DELIMITER);
}
