/* Forward error correction on the link (docs: /work/notes/fec_spec.md, "FEC spec v1"; mirrored by
 * firmware_bridge/protocol/fec.py, the reference).
 *
 *   wire = [0x00]? v v v S(C) 0x00
 *   C    = the raw frame (header, payload, CRC) cut into blocks of at most 48 bytes, each block a
 *          systematic Reed-Solomon codeword over GF(2^8) (0x11D, alpha 2, first root alpha^0) with
 *          2*ceil(k/16)+2 parity bytes; at most 254 codeword bytes, else the frame goes as plain COBS;
 *   v    = the smallest byte value absent from C; S replaces 0x00 by v, so no 0x00 inside the frame.
 *
 * A receiver tries COBS first and FEC only if COBS does not give a valid frame (te_rx_feed); the FEC
 * decoder corrects byte errors and also one dropped or inserted byte per block (up to 3 drops or 2
 * inserts in a frame), by searching the position.  Fixed buffers only; no allocation. */
#ifndef TE_FEC_H
#define TE_FEC_H

#include <stddef.h>
#include <stdint.h>

#include "te_frame.h"

#define TE_FEC_BLOCK 48u           /* most data bytes in one codeword */
#define TE_FEC_MAX_PARITY 8u       /* parity bytes of a 33..48-byte block */
#define TE_FEC_MAX_CODEWORDS 254u  /* codeword bytes of one frame, at most */
#define TE_FEC_MAX_RAW 214u        /* the longest raw frame whose codewords fit in 254 bytes */
#define TE_FEC_KEYS 3u             /* copies of the stuffing key before the codewords */
/* The longest body (bytes between delimiters) a decode hypothesis accepts: 254 codeword bytes with two
 * inserted. */
#define TE_FEC_MAX_BODY (TE_FEC_KEYS + TE_FEC_MAX_CODEWORDS + 2u)
#define TE_FEC_MIN_BODY (TE_FEC_KEYS + 5u)

/* Codeword bytes of a raw frame of n bytes; 0 if it is shorter than header + CRC or its codewords would
 * exceed TE_FEC_MAX_CODEWORDS. */
size_t te_fec_encoded_size(size_t n);

/* Send a raw frame FEC-encoded to `put` (lead: a delimiter first), followed by the delimiter.  Returns 0
 * and sends nothing if the frame is too long for FEC (the caller sends it as COBS). */
int te_fec_send(const uint8_t *raw, size_t n, int lead, void (*put)(uint8_t));

/* Decode one FEC body (the bytes between two delimiters; its key the majority of the first three, else it
 * is not an FEC frame).  Each hypothesis of the spec's search that
 * yields a raw frame is offered to accept(raw, len, ctx); the first accepted one wins.  raw must hold
 * TE_FEC_MAX_RAW bytes.  Returns the accepted length, or 0. */
size_t te_fec_decode(const uint8_t *body, size_t r, uint8_t *raw,
                     int (*accept)(const uint8_t *raw, size_t n, void *ctx), void *ctx);

/* The device's receiver: the COBS decoder of te_frame.h, then FEC on a body that COBS rejected.  The frame
 * says which encoding it arrived in (frame->fec), so the reply can go back in kind.  FEC bodies longer
 * than the COBS decoder's limit are dropped as too long; with max_payload >= 247 that never happens. */
typedef struct {
    te_decoder_t cobs;
    uint8_t body[TE_FEC_MAX_BODY];
    uint16_t body_len;   /* bytes of this body so far, counted up to TE_FEC_MAX_BODY + 1 */
} te_rx_t;

void te_rx_init(te_rx_t *rx, uint16_t max_payload);

/* As te_decoder_feed; a frame recovered by FEC is TE_FEED_FRAME with frame->fec = 1, and a body neither
 * path decodes reports the COBS path's error. */
int te_rx_feed(te_rx_t *rx, uint8_t byte, te_frame_t *frame, te_status_t *error);

/* Reed-Solomon over one codeword of n bytes with np parity bytes (exposed for the host tests). */
void te_rs_encode(const uint8_t *data, size_t k, uint8_t *parity, size_t np);
/* Corrects cw in place; `erasure` is a byte index or -1.  1 on success (2*errors + erasures <= np, every
 * error inside the codeword, corrected syndromes zero), else 0 and cw unchanged. */
int te_rs_decode(uint8_t *cw, size_t n, size_t np, int erasure);

#endif
