/* The fuzz target's reading of docs/protocol.md (see fuzz_oracle.h).  Written
 * for plainness, not speed: a bitwise CRC, a whole-frame COBS decode, 64-bit
 * sums, the RUN checks as one list in the spec's order. */
#include "fuzz_oracle.h"

#include <math.h>
#include <string.h>

static uint32_t rd16(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8; }
static uint32_t rd32(const uint8_t *p) { return rd16(p) | rd16(p + 2) << 16; }

static uint32_t crc32_bitwise(const uint8_t *p, size_t n)
{
    uint32_t crc = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; ++i) {
        crc ^= p[i];
        for (int b = 0; b < 8; ++b) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    return ~crc;
}

void oracle_wire_init(oracle_wire_t *w) { memset(w, 0, sizeof *w); }

/* COBS-decode and check one complete frame (no delimiter), in the spec's order. */
static te_status_t decode(oracle_wire_t *w)
{
    size_t i = 0;
    w->raw_len = 0;
    while (i < w->n) {
        const size_t code = w->buf[i];
        if (code == 0 || i + code > w->n) return TE_FRAME_COBS;
        memcpy(w->raw + w->raw_len, w->buf + i + 1, code - 1);
        w->raw_len += code - 1;
        i += code;
        if (code != 255 && i < w->n) w->raw[w->raw_len++] = 0;
    }
    if (w->raw_len < 10) return TE_FRAME_SHORT;
    const uint32_t length = rd16(w->raw + 4);
    if (length > TX_MAX_PAYLOAD) return TE_FRAME_TOO_LONG;
    if (length + 10 != w->raw_len) return TE_FRAME_LENGTH;
    if (crc32_bitwise(w->raw, w->raw_len - 4) != rd32(w->raw + w->raw_len - 4)) return TE_FRAME_CRC;
    if (w->raw[0] != 1) return TE_FRAME_VERSION;
    return TE_OK;
}

void oracle_byte(oracle_wire_t *w, uint8_t byte)
{
    w->event = TE_FEED_NONE;
    if (byte == 0) {
        w->body_len = w->overflow ? 0 : w->n;
        if (!w->overflow && w->n) {
            w->error = decode(w);
            w->event = w->error == TE_OK ? TE_FEED_FRAME : TE_FEED_ERROR;
        }
        w->overflow = 0;
        w->n = 0;
        return;
    }
    if (w->overflow) return;
    w->buf[w->n++] = byte;
    if (w->n > TX_MAX_ENCODED_FRAME) { /* reported once, then silence until the next delimiter */
        w->overflow = 1;
        w->n = 0;
        w->event = TE_FEED_ERROR;
        w->error = TE_FRAME_TOO_LONG;
    }
}

static int param_ok(uint8_t policy, int i, float v)
{
    if (policy == TX_POLICY_PATIENCE) return i > 0 || (v >= 1.0f && v == floorf(v));
    return v >= 0.0f && v <= 1.0f;
}

static te_status_t run(oracle_device_t *o, const uint8_t *p, uint16_t length)
{
    const te_firmware_models_t *m = o->m;
    if (length < 8) return TE_REQ_PAYLOAD_SIZE;
    const uint8_t mode = p[0], segment = p[1], policy = p[2], n_params = p[3];
    const uint32_t repeat = rd16(p + 4), slot = rd16(p + 6);
    if (n_params > 16) return TE_REQ_BAD_PARAMS;
    if (length != 8u + 4u * n_params) return TE_REQ_PAYLOAD_SIZE;
    if (mode > 3) return TE_REQ_BAD_MODE;
    if (repeat < 1) return TE_REQ_BAD_REPEAT;
    float params[16];
    for (int i = 0; i < n_params; ++i) {
        const uint32_t bits = rd32(p + 8 + 4 * i);
        memcpy(&params[i], &bits, 4);
        if (!isfinite(params[i])) return TE_REQ_BAD_PARAMS;
    }
    const te_model_t *model = m->segments;
    if ((mode == TX_MODE_CHAIN || mode == TX_MODE_SEGMENT) && segment >= model->num_segments)
        return TE_REQ_BAD_SEGMENT;
    if (mode == TX_MODE_FULL) {
        if (segment > 1) return TE_REQ_BAD_SEGMENT;
        model = segment == 0 ? m->full : m->all_exits;
        if (!model) return TE_REQ_UNSUPPORTED;
    }
    if (mode == TX_MODE_EARLY_EXIT) {
        if (policy > TX_POLICY_CALIBRATED) return TE_REQ_BAD_POLICY;
        if (n_params == 0) return TE_REQ_BAD_PARAMS;
        for (int i = 0; i < n_params; ++i)
            if (!param_ok(policy, i, params[i])) return TE_REQ_BAD_PARAMS;
    }
    const uint64_t size = model->segments[mode == TX_MODE_SEGMENT ? segment : 0].in_bytes;
    if ((uint64_t)slot * size + size > m->input_capacity) return TE_REQ_BAD_SLOT;
    if ((uint64_t)slot * size + size > o->valid) return TE_REQ_INPUT_MISSING;
    return TE_OK;
}

te_status_t oracle_reply(oracle_device_t *o, uint8_t type, uint16_t seq, const uint8_t *p, uint16_t length)
{
    if (seq == 0xFFFFu) return TE_REQ_BAD_SEQ;
    switch (type) {
    case TX_MSG_HELLO:
        return length ? TE_REQ_PAYLOAD_SIZE : TE_OK;
    case TX_MSG_RESET:
        if (length) return TE_REQ_PAYLOAD_SIZE;
        o->valid = 0;
        return TE_OK;
    case TX_MSG_LOAD_INPUT: {
        if (length <= 4) return TE_REQ_PAYLOAD_SIZE;
        const uint64_t offset = rd32(p), end = offset + (length - 4u);
        if (offset > o->valid || end > o->m->input_capacity) return TE_REQ_INPUT_RANGE;
        o->valid = offset == 0 || end > o->valid ? (uint32_t)end : o->valid;
        return TE_OK;
    }
    case TX_MSG_RUN:
        return run(o, p, length);
    case TX_MSG_GENERATE:
        if (!o->m->sampler) return TE_REQ_UNKNOWN_TYPE;
        return length == 4 ? TE_OK : TE_REQ_PAYLOAD_SIZE;
    default:
        return TE_REQ_UNKNOWN_TYPE;
    }
}
