/* Request handling of the device (see te_device.h and docs/protocol.md). */
#include "te_device.h"

#include <math.h>
#include <string.h>

#include "port.h"

#ifndef TE_FIRMWARE_VERSION
#define TE_FIRMWARE_VERSION "tinyexit-fw 0.1.0"
#endif

void te_device_init(te_device_t *d, const te_firmware_models_t *m, uint32_t session)
{
    memset(d, 0, sizeof *d);
    d->m = m;
    d->session = session;
    d->has_gpio = port_gpio_marker(0);
}

static size_t put_string(uint8_t *p, const char *s)
{
    size_t n = strlen(s);
    if (n > TX_MAX_STRING) n = TX_MAX_STRING;
    p[0] = (uint8_t)n;
    memcpy(p + 1, s, n);
    return n + 1;
}

static uint16_t capabilities(const te_device_t *d)
{
    uint16_t caps = TX_CAP_CHAIN | TX_CAP_EARLY_EXIT | TX_CAP_SEGMENT | TX_CAP_RESET | TX_CAP_FEC;
    if (d->m->full) caps |= TX_CAP_FULL;
    if (d->m->all_exits) caps |= TX_CAP_FULL_ALL_EXITS;
    if (d->has_gpio) caps |= TX_CAP_ENERGY_GPIO;
    return caps;
}

/* INFO payload, TX_INFO_FIXED_SIZE bytes then device, runtime and version strings. */
static size_t info_payload(const te_device_t *d, uint8_t *p)
{
    const te_model_t *s = d->m->segments;
    const te_segment_t *last = &s->segments[s->num_segments - 1];
    memset(p, 0, TX_INFO_FIXED_SIZE);
    p[0] = TX_RUNTIME_GENERATED_C;
    p[1] = (uint8_t)s->num_segments;
    te_put16(p + 2, capabilities(d));
    te_put16(p + 4, TE_MAX_PAYLOAD);
    te_put16(p + 6, last->num_classes);
    te_put32(p + 8, port_tick_hz());
    te_put32(p + 12, s->segments[0].in_bytes);
    te_put32(p + 16, d->m->input_capacity);
    te_put32(p + 20, d->session);
    p[24] = (1u << (TX_POLICY_CALIBRATED + 1)) - 1u; /* every policy id */
    memcpy(p + 28, d->m->artifact_hash, 32);
    size_t n = TX_INFO_FIXED_SIZE;
    n += put_string(p + n, port_board_name());
    n += put_string(p + n, d->m->runtime_name);
    n += put_string(p + n, TE_FIRMWARE_VERSION);
    return n;
}

static size_t finish(te_device_t *d, uint8_t type, uint16_t seq, size_t payload_len)
{
    d->reply_len = te_frame_build(d->reply, sizeof d->reply, type, seq, d->reply + TX_HEADER_SIZE,
                                  (uint16_t)payload_len);
    return d->reply_len;
}

static size_t error_payload(uint8_t *p, te_status_t code, const char *text)
{
    size_t n = strlen(text);
    if (n > TX_MAX_ERROR_TEXT) n = TX_MAX_ERROR_TEXT;
    te_put16(p, code);
    p[2] = (uint8_t)n;
    memcpy(p + TX_ERROR_FIXED_SIZE, text, n);
    return TX_ERROR_FIXED_SIZE + n;
}

size_t te_device_boot_info(te_device_t *d, const uint8_t **raw)
{
    /* built in the reply buffer, which holds no cached reply yet at boot */
    const size_t n = info_payload(d, d->reply + TX_HEADER_SIZE);
    *raw = d->reply;
    return te_frame_build(d->reply, sizeof d->reply, TX_MSG_INFO, TX_SEQ_UNSOLICITED, d->reply + TX_HEADER_SIZE,
                          (uint16_t)n);
}

size_t te_device_nack(te_device_t *d, te_status_t error, const uint8_t **raw)
{
    uint8_t body[TX_ERROR_FIXED_SIZE + TX_MAX_ERROR_TEXT];
    const size_t n = error_payload(body, error, te_status_text(error));
    d->nacks++;
    *raw = d->nack;
    return te_frame_build(d->nack, sizeof d->nack, TX_MSG_ERROR, TX_SEQ_UNSOLICITED, body, (uint16_t)n);
}

static te_status_t load_input(te_device_t *d, const te_frame_t *f, uint8_t *out, size_t *len)
{
    TE_CHECK(f->length > TX_LOAD_FIXED_SIZE, TE_REQ_PAYLOAD_SIZE);
    const uint32_t offset = te_get32(f->payload);
    const uint32_t n = f->length - TX_LOAD_FIXED_SIZE;
    /* offset <= valid <= capacity, so offset + n cannot wrap */
    TE_CHECK(offset <= d->valid && n <= d->m->input_capacity - offset, TE_REQ_INPUT_RANGE);
    memcpy(d->m->input + offset, f->payload + TX_LOAD_FIXED_SIZE, n);
    const uint32_t end = offset + n;
    d->valid = offset == 0 ? end : (end > d->valid ? end : d->valid);
    te_put32(out, d->valid);
    *len = TX_ACK_SIZE;
    return TE_OK;
}

/* RUN payload, checked in the order of messages.Run.unpack. */
static te_status_t parse_run(const te_frame_t *f, te_run_request_t *r)
{
    const uint8_t *p = f->payload;
    TE_CHECK(f->length >= TX_RUN_FIXED_SIZE, TE_REQ_PAYLOAD_SIZE);
    r->mode = p[0];
    r->segment = p[1];
    r->policy_id = p[2];
    r->n_params = p[3];
    r->repeat = te_get16(p + 4);
    r->slot = te_get16(p + 6);
    TE_CHECK(r->n_params <= TX_MAX_POLICY_PARAMS, TE_REQ_BAD_PARAMS);
    TE_CHECK(f->length == TX_RUN_FIXED_SIZE + 4u * r->n_params, TE_REQ_PAYLOAD_SIZE);
    TE_CHECK(r->mode <= TX_MODE_SEGMENT, TE_REQ_BAD_MODE);
    TE_CHECK(r->repeat >= 1, TE_REQ_BAD_REPEAT);
    for (int i = 0; i < r->n_params; ++i) {
        const uint32_t bits = te_get32(p + TX_RUN_FIXED_SIZE + 4 * i);
        memcpy(&r->params[i], &bits, 4);
        TE_CHECK(isfinite(r->params[i]), TE_REQ_BAD_PARAMS);
    }
    return TE_OK;
}

static te_status_t generate(te_device_t *d, const te_frame_t *f, uint8_t *out, size_t cap, size_t *len)
{
    const te_sampler_t *s = d->m->sampler;
    TE_CHECK(f->length == 4, TE_REQ_PAYLOAD_SIZE);
    const size_t need = TX_RESULT_FIXED_SIZE + 8u + s->pixels;
    TE_CHECK(need <= cap && s->pixels <= TX_MAX_LOGITS, TE_DEV_INTERNAL);
    uint64_t net = 0, math = 0;
    int8_t *image = (int8_t *)out + TX_RESULT_FIXED_SIZE + 8;
    te_sampler_generate(s, d->m->segments, d->m->arena, te_get32(f->payload), image, &net, &math);
    memset(out, 0, TX_RESULT_FIXED_SIZE);
    out[0] = TX_MODE_GENERATE;
    out[2] = 1;
    te_put16(out + 4, 1);
    te_put16(out + 6, s->pixels);
    te_put32(out + 8, port_tick_hz());
    te_put64(out + 16, math);
    te_put64(out + TX_RESULT_FIXED_SIZE, net);
    *len = need;
    return TE_OK;
}

static te_status_t expect_empty(const te_frame_t *f)
{
    TE_CHECK(f->length == 0, TE_REQ_PAYLOAD_SIZE);
    return TE_OK;
}

static te_status_t dispatch(te_device_t *d, const te_frame_t *f, uint8_t *type, uint8_t *out, size_t cap, size_t *len)
{
    te_status_t st;
    switch (f->type) {
    case TX_MSG_HELLO:
    case TX_MSG_RESET:
        if ((st = expect_empty(f)) != TE_OK) return st;
        if (f->type == TX_MSG_RESET) {
            d->session = d->session * 1664525u + 1013904223u;
            d->valid = 0;
        }
        *type = TX_MSG_INFO;
        *len = info_payload(d, out);
        return TE_OK;
    case TX_MSG_LOAD_INPUT:
        *type = TX_MSG_ACK;
        return load_input(d, f, out, len);
    case TX_MSG_RUN: {
        te_run_request_t req;
        if ((st = parse_run(f, &req)) != TE_OK) return st;
        *type = TX_MSG_RESULT;
        return te_run(d, &req, out, cap, len);
    }
    case TX_MSG_GENERATE:
        if (!d->m->sampler) return TE_REQ_UNKNOWN_TYPE; /* only a denoiser firmware samples */
        *type = TX_MSG_RESULT;
        return generate(d, f, out, cap, len);
    default:
        return TE_REQ_UNKNOWN_TYPE;
    }
}

size_t te_device_handle(te_device_t *d, const te_frame_t *f, const uint8_t **raw)
{
    *raw = d->reply;
    if (f->type != TX_MSG_HELLO && d->have_last && f->type == d->last_type && f->seq == d->last_seq &&
        f->length == d->last_len && f->crc == d->last_crc) {
        d->duplicates++;
        return d->reply_len;
    }
    uint8_t *out = d->reply + TX_HEADER_SIZE;
    const size_t cap = sizeof d->reply - TX_HEADER_SIZE - TX_CRC_SIZE;
    uint8_t type = TX_MSG_ERROR;
    size_t len = 0;
    te_status_t st = TE_REQ_BAD_SEQ;
    if (f->seq != TX_SEQ_UNSOLICITED) {
        d->executed++;
        st = dispatch(d, f, &type, out, cap, &len);
    }
    if (st != TE_OK) {
        type = TX_MSG_ERROR;
        len = error_payload(out, st, te_status_text(st));
    }
    d->have_last = 1;
    d->last_type = f->type;
    d->last_seq = f->seq;
    d->last_len = f->length;
    d->last_crc = f->crc;
    return finish(d, type, f->seq, len);
}
