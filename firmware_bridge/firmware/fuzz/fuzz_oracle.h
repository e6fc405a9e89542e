/* The fuzz target's second opinion: docs/protocol.md written out again as
 * plainly as possible, independent of core/, so the fuzzer finds any input on
 * which the firmware and the spec disagree.
 *
 *   oracle_byte   what a receiver must report for each byte on the wire: frames
 *                 are cut at 0x00, COBS-decoded in one piece and checked in the
 *                 spec's order (the firmware decodes byte by byte, in place); a body
 *                 COBS rejects may still be an FEC frame (te_fec.h): the harness checks
 *                 that case against te_fec_decode on the body left in buf;
 *   oracle_reply  the status a device must answer a decoded request with, and
 *                 the input bytes it holds afterwards (the firmware's checks are
 *                 spread over te_device.c, te_run.c and te_policy.c). */
#ifndef FUZZ_ORACLE_H
#define FUZZ_ORACLE_H

#include <stddef.h>
#include <stdint.h>

#include "te_device.h"

typedef struct {
    uint8_t buf[TX_MAX_ENCODED_FRAME + 1];
    size_t n;
    int overflow;
    /* the last event */
    int event;                       /* TE_FEED_NONE / _FRAME / _ERROR */
    te_status_t error;
    uint8_t raw[TX_MAX_ENCODED_FRAME];
    size_t raw_len;
    size_t body_len;                 /* bytes of the body the last delimiter ended (still in buf) */
} oracle_wire_t;

typedef struct {
    const te_firmware_models_t *m;
    uint32_t valid;                  /* input bytes loaded contiguously from 0 */
} oracle_device_t;

void oracle_wire_init(oracle_wire_t *w);

/* Feed one byte; w->event says what a receiver reports; a frame's decoded bytes
 * (header, payload, CRC) are in w->raw. */
void oracle_byte(oracle_wire_t *w, uint8_t byte);

/* The status the device must reply to this request (TE_OK: the expected reply
 * type), updating the oracle's input bytes as the request would. */
te_status_t oracle_reply(oracle_device_t *o, uint8_t type, uint16_t seq, const uint8_t *payload, uint16_t length);

#endif
