/* The device end of the protocol, independent of the board: one decoded
 * request in, one raw reply frame out.  Mirrors the Python DeviceCore
 * (firmware_bridge/agent/server.py): a retransmitted request (same type, sequence
 * number, length and CRC) is answered from the cached last reply and not
 * executed again; HELLO is always answered afresh. */
#ifndef TE_DEVICE_H
#define TE_DEVICE_H

#include <stddef.h>
#include <stdint.h>

#include "te_frame.h"
#include "te_models.h"
#include "te_policy.h"

/* TX_MSG_EXIT ends the program (under QEMU, a semihosting exit with status 0)
 * without a reply; the QEMU target sends it to stop the emulator cleanly.
 * TX_MSG_GENERATE (payload: seed u32) runs the denoiser's whole reverse
 * process on the device (te_sampler.h) and answers a RESULT with mode
 * TX_MODE_GENERATE, one tick count (network), decision ticks (sampling
 * arithmetic) and the final +1/-1 image as its "logits". */

/* Largest reply: a RESULT with every segment's ticks and the most logits. */
#define TE_REPLY_CAPACITY (TX_HEADER_SIZE + TX_RESULT_FIXED_SIZE + 8u * TX_MAX_SEGMENTS + TX_MAX_LOGITS + TX_CRC_SIZE)

typedef struct {
    uint8_t mode, segment, policy_id, n_params;
    uint16_t repeat, slot;
    float params[TX_MAX_POLICY_PARAMS];
} te_run_request_t;

typedef struct {
    const te_firmware_models_t *m;
    uint32_t valid;                 /* input bytes loaded contiguously from offset 0 */
    uint32_t session;
    uint32_t window;                /* energy windows opened so far */
    int has_gpio;
    /* the last executed request and its reply */
    int have_last;
    uint8_t last_type;
    uint16_t last_seq, last_len;
    uint32_t last_crc;
    uint8_t reply[TE_REPLY_CAPACITY];
    size_t reply_len;
    uint8_t nack[TX_HEADER_SIZE + TX_ERROR_FIXED_SIZE + TX_MAX_ERROR_TEXT + TX_CRC_SIZE];
    uint32_t executed, duplicates, nacks;
} te_device_t;

void te_device_init(te_device_t *d, const te_firmware_models_t *m, uint32_t session);

/* The unsolicited INFO a device sends at boot (raw frame). */
size_t te_device_boot_info(te_device_t *d, const uint8_t **raw);

size_t te_device_handle(te_device_t *d, const te_frame_t *f, const uint8_t **raw);

/* An ERROR with SEQ_UNSOLICITED for a frame the decoder rejected. */
size_t te_device_nack(te_device_t *d, te_status_t error, const uint8_t **raw);

/* Run one request (te_run.c); fills the RESULT payload at out, returns its
 * length through *len. */
te_status_t te_run(te_device_t *d, const te_run_request_t *req, uint8_t *out, size_t capacity, size_t *len);

/* Little-endian helpers shared by te_device.c and te_run.c. */
static inline void te_put16(uint8_t *p, uint32_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static inline void te_put32(uint8_t *p, uint32_t v) { te_put16(p, v); te_put16(p + 2, v >> 16); }
static inline void te_put64(uint8_t *p, uint64_t v) { te_put32(p, (uint32_t)v); te_put32(p + 4, (uint32_t)(v >> 32)); }
static inline uint16_t te_get16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t te_get32(const uint8_t *p) { return te_get16(p) | ((uint32_t)te_get16(p + 2) << 16); }

#endif
