/* Frames on the wire (docs/protocol.md): COBS-stuffed, 0x00-delimited,
 *   header = version u8 | type u8 | seq u16 | length u16   (little-endian)
 *   then the payload and a CRC-32 (zlib) over header + payload.
 * The decoder takes one byte at a time into a fixed buffer; every length
 * comes from counting received bytes, never from a field, and a frame longer
 * than the buffer is dropped (reported once) until the next delimiter. */
#ifndef TE_FRAME_H
#define TE_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "te_status.h"

/* Encoded bytes of the longest frame with a `max_payload`-byte payload. */
#define TE_MAX_ENCODED(max_payload) \
    ((TX_HEADER_SIZE + (max_payload) + TX_CRC_SIZE) + (TX_HEADER_SIZE + (max_payload) + TX_CRC_SIZE) / 254u + 1u)

#ifndef TE_MAX_PAYLOAD
#define TE_MAX_PAYLOAD TX_MAX_PAYLOAD
#endif

typedef struct {
    uint8_t type;
    uint16_t seq;
    uint16_t length;
    const uint8_t *payload;
    uint32_t crc;           /* of header + payload, as received */
    uint8_t fec;            /* 1: it arrived FEC-encoded (te_fec.h), so the reply goes back in kind */
} te_frame_t;

typedef struct {
    uint8_t raw[TE_MAX_ENCODED(TE_MAX_PAYLOAD)];
    uint32_t raw_len;       /* decoded bytes so far */
    uint32_t encoded;       /* encoded bytes of this frame so far */
    uint32_t limit;         /* TE_MAX_ENCODED(max_payload) */
    uint16_t max_payload;
    uint8_t block_left;     /* data bytes left in the current COBS block */
    uint8_t pending_zero;   /* a decoded 0x00 to emit before the next block */
    uint8_t overflow;       /* dropping bytes until the next delimiter */
} te_decoder_t;

enum { TE_FEED_NONE = 0, TE_FEED_FRAME = 1, TE_FEED_ERROR = 2 };

uint32_t te_crc32(const uint8_t *data, size_t n, uint32_t crc);

/* max_payload must lie in [TX_MIN_DEVICE_PAYLOAD, TE_MAX_PAYLOAD]. */
void te_decoder_init(te_decoder_t *d, uint16_t max_payload);

/* Feed one byte.  TE_FEED_FRAME fills *frame (valid until the next call);
 * TE_FEED_ERROR sets *error; TE_FEED_NONE otherwise. */
int te_decoder_feed(te_decoder_t *d, uint8_t byte, te_frame_t *frame, te_status_t *error);

/* The checks of a complete raw frame (header, payload, CRC), in the spec's order; fills *f (payload
 * pointing into raw, fec = 0) on TE_OK. */
te_status_t te_frame_parse(const uint8_t *raw, size_t n, uint16_t max_payload, te_frame_t *f);

/* Build the raw frame (header, payload, CRC) into out (capacity bytes);
 * returns its length, or 0 if it does not fit. */
size_t te_frame_build(uint8_t *out, size_t capacity, uint8_t type, uint16_t seq, const uint8_t *payload,
                      uint16_t length);

/* COBS-encode a raw frame to `put`, followed by the delimiter; `lead` sends
 * a delimiter first so a receiver drops any partial frame it holds. */
void te_frame_send(const uint8_t *raw, size_t n, int lead, void (*put)(uint8_t));

#endif
