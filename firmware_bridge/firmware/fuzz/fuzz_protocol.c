/* libFuzzer target: arbitrary bytes through the firmware's receiver and
 * request handler (core/te_frame.c, te_fec.c, te_device.c, te_run.c, te_policy.c,
 * te_sampler.c) with real generated models linked in, under AddressSanitizer
 * and UndefinedBehaviorSanitizer.  Built and run by
 * tinyexit/firmware_bridge/reliability/fuzz_c.py (`tinyexit reliability fuzz-c`).
 *
 * Input: one control byte, then the body.
 *   control bit 0  the firmware image: 0 classifier (te_models), 1 denoiser
 *                  (te_models_denoiser, which also answers GENERATE)
 *   control bit 1  0: the body is bytes on the wire, fed one at a time to the
 *                  decoder exactly as te_main.c does;
 *                  1: the body is a list of frame records the harness frames
 *                  with the firmware's own te_frame_build/te_frame_send, so the
 *                  fuzzer reaches the request handler past the CRC:
 *                    flags u8 | type u8 | seq u16 | length u16 | [forced length u16]
 *                    | [damage at u8 | damage how u8] | payload
 *                  flags bit 0: a delimiter first; bit 1: a forced length field
 *                  follows (CRC computed over the lie); bit 2: CRC off by one bit;
 *                  bit 3: sent FEC-encoded (te_fec.h) when it fits; bit 4: the
 *                  frame's byte `at` damaged on the way (how & 3: 0 corrupted with
 *                  how | 1, 1 dropped, 2 doubled, 3 followed by how | 1).
 *
 * Besides the sanitizers, every reply is checked against the protocol
 * (docs/protocol.md) and a violation aborts, so the fuzzer reports it.  Each
 * byte's decoder event and each request's status must be what fuzz_oracle.c,
 * an independent plain reading of the spec, says; and
 * exactly one reply per frame and one NACK per undecodable frame; every reply a
 * well-formed frame with the request's seq, FEC-encoded iff the request was and
 * the reply fits (NACKs plain COBS); a frame recovered by FEC only from a body
 * COBS rejected, and equal to what te_fec_decode makes of that body; its type the one the request
 * expects or ERROR with a known 0x01xx/0x02xx code (0x03xx means the device
 * failed: a bug); RESULT/ACK/INFO sized and bounded as the spec says; a
 * retransmitted request answered byte for byte from the cache.
 *
 * Cost bound: RUN repeat counts above 3 are folded into 2..3 before the
 * device sees them (the same checks run; test_device_bounds_c.py covers the
 * real limit) and an input stops once its requests executed 600 layers, so
 * one input never costs more than a few inferences. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_oracle.h"
#include "port.h"
#include "te_device.h"
#include "te_fec.h"

extern const te_firmware_models_t te_models;
extern const te_firmware_models_t te_models_denoiser;

#define LAYER_BUDGET 600u
#define MAX_RECORD_PAYLOAD 1100u /* past MAX_PAYLOAD, so oversize frames occur */

static te_device_t device;
static te_rx_t decoder;
static te_rx_t host;                /* the host end: decodes the replies */
static oracle_wire_t wire;          /* the spec's reading of the same bytes */
static oracle_device_t spec;
static uint64_t ticks;
static uint32_t layers;

/* What the inputs reached, printed at exit ("fuzz_protocol: reached ...") so a
 * run can show that RUN, GENERATE and every refusal really executed. */
static struct {
    unsigned long inputs[2], info, ack, result[2], generate, nack, error, fec[2]; /* fec: in, out */
    unsigned long code[4][16]; /* [range][low byte] */
} seen;

/* ---- the port, deterministic -------------------------------------------- */
void port_init(void) {}
int port_uart_getc(void) { return -1; }
void port_uart_putc(uint8_t byte) { (void)byte; }
uint64_t port_ticks(void) { return ticks += 7; }
uint32_t port_tick_hz(void) { return 25000000u; }
int port_gpio_marker(int on) { (void)on; return 1; }
void te_layer_done(uint16_t layer) { (void)layer; layers++; }

#define REQUIRE(cond)                                                                   \
    do {                                                                                \
        if (!(cond)) {                                                                  \
            fprintf(stderr, "fuzz_protocol: protocol violation: %s (line %d)\n", #cond, __LINE__); \
            abort();                                                                    \
        }                                                                               \
    } while (0)

/* ---- replies: decoded by the host end and checked -------------------------- */
static te_frame_t reply;
static uint8_t reply_copy[TE_REPLY_CAPACITY];
static int replies;

static void host_put(uint8_t byte)
{
    te_frame_t f;
    te_status_t err;
    const int ev = te_rx_feed(&host, byte, &f, &err);
    REQUIRE(ev != TE_FEED_ERROR);
    if (ev == TE_FEED_FRAME) {
        REQUIRE(f.length <= sizeof reply_copy);
        memcpy(reply_copy, f.payload, f.length);
        reply = f;
        reply.payload = reply_copy;
        replies++;
    }
}

static const te_firmware_models_t *models;
/* the previous executed request and its reply, for the duplicate check */
static int have_prev;
static uint8_t prev_type;
static uint16_t prev_seq, prev_len;
static uint32_t prev_crc;
static uint8_t prev_reply[TE_REPLY_CAPACITY + TX_HEADER_SIZE + TX_CRC_SIZE];
static size_t prev_reply_len;

static void check_error(uint16_t expect_seq, int nack)
{
    REQUIRE(reply.type == TX_MSG_ERROR && reply.seq == expect_seq);
    REQUIRE(reply.length >= TX_ERROR_FIXED_SIZE);
    const uint16_t code = te_get16(reply.payload);
    REQUIRE(reply.payload[2] <= TX_MAX_ERROR_TEXT && reply.length == TX_ERROR_FIXED_SIZE + reply.payload[2]);
    REQUIRE(strcmp(te_status_name((te_status_t)code), "UNKNOWN") != 0);
    REQUIRE((code >> 8) == (nack ? 0x01 : 0x02));
    seen.code[code >> 8][code & 15u]++;
    if (nack) seen.nack++;
    else seen.error++;
}

static void check_result(const te_frame_t *req)
{
    const te_model_t *m = models->segments;
    const uint8_t *p = reply.payload;
    REQUIRE(reply.length >= TX_RESULT_FIXED_SIZE);
    const unsigned n_ticks = p[2], n_logits = te_get16(p + 6);
    REQUIRE(reply.length == TX_RESULT_FIXED_SIZE + 8u * n_ticks + n_logits);
    REQUIRE(n_ticks >= 1 && n_ticks <= m->num_segments && p[1] < m->num_segments);
    if (req->type == TX_MSG_GENERATE) {
        REQUIRE(p[0] == TX_MODE_GENERATE && models->sampler && n_logits == models->sampler->pixels);
        for (unsigned i = 0; i < n_logits; ++i)
            REQUIRE(p[TX_RESULT_FIXED_SIZE + 8 + i] == 1 || p[TX_RESULT_FIXED_SIZE + 8 + i] == 0xFF);
        seen.generate++;
        return;
    }
    seen.result[models == &te_models_denoiser]++;
    REQUIRE(p[0] == req->payload[0] && te_get16(p + 4) == te_get16(req->payload + 4));
    REQUIRE(n_logits == m->segments[p[1]].num_classes);
}

/* A reply goes back in the encoding its request came in (te_main.c's send). */
static void send_reply(const uint8_t *raw, size_t n, int fec)
{
    if (!fec || !te_fec_send(raw, n, 0, host_put)) te_frame_send(raw, n, 0, host_put);
}

/* One decoded request: the device's reply must be exactly one frame the spec allows. */
static void handle(te_frame_t *f)
{
    uint8_t payload[TX_MAX_PAYLOAD];
    if (f->type == TX_MSG_RUN && f->length >= TX_RUN_FIXED_SIZE) {
        memcpy(payload, f->payload, f->length);
        const uint16_t repeat = te_get16(payload + 4);
        if (repeat > 3) te_put16(payload + 4, 2u + (repeat & 1u));
        f->payload = payload;
    }
    if (f->type == TX_MSG_EXIT && f->length == 0) return; /* te_main.c ends the program: no reply */
#ifdef TE_FUZZ_PLANTED_BUG
    /* Only in the test proving that a bug is found and reported: the classic one, a LOAD_INPUT copied
     * with its start checked but not its end. */
    if (f->type == TX_MSG_LOAD_INPUT && f->length > TX_LOAD_FIXED_SIZE && te_get32(f->payload) <= device.valid)
        memcpy(models->input + te_get32(f->payload), f->payload + TX_LOAD_FIXED_SIZE, f->length - TX_LOAD_FIXED_SIZE);
#endif
    const int dup = f->type != TX_MSG_HELLO && have_prev && f->type == prev_type && f->seq == prev_seq &&
                    f->length == prev_len && f->crc == prev_crc;
    const te_status_t want = dup ? TE_OK : oracle_reply(&spec, f->type, f->seq, f->payload, f->length);
    const uint8_t *raw;
    const size_t n = te_device_handle(&device, f, &raw);
    REQUIRE(n >= TX_HEADER_SIZE + TX_CRC_SIZE && n <= sizeof prev_reply);
    const int before = replies;
    send_reply(raw, n, f->fec);
    REQUIRE(replies == before + 1 && reply.fec == (f->fec && te_fec_encoded_size(n) != 0));
    seen.fec[1] += reply.fec;
    if (dup) REQUIRE(n == prev_reply_len && memcmp(raw, prev_reply, n) == 0);
    memcpy(prev_reply, raw, n);
    prev_reply_len = n;
    have_prev = 1;
    prev_type = f->type;
    prev_seq = f->seq;
    prev_len = f->length;
    prev_crc = f->crc;
    if (dup) return;
    REQUIRE((reply.type == TX_MSG_ERROR) == (want != TE_OK));
    if (reply.type == TX_MSG_ERROR) {
        check_error(f->seq, 0); /* seq 0xFFFF: REQ_BAD_SEQ, echoed with 0xFFFF */
        REQUIRE(te_get16(reply.payload) == want);
        return;
    }
    REQUIRE(reply.seq == f->seq);
    switch (f->type) {
    case TX_MSG_HELLO:
    case TX_MSG_RESET:
        REQUIRE(reply.type == TX_MSG_INFO && reply.length >= TX_INFO_FIXED_SIZE + 3);
        REQUIRE(te_get32(reply.payload + 16) == models->input_capacity);
        seen.info++;
        break;
    case TX_MSG_LOAD_INPUT:
        REQUIRE(reply.type == TX_MSG_ACK && reply.length == TX_ACK_SIZE);
        REQUIRE(te_get32(reply.payload) == spec.valid && spec.valid <= models->input_capacity);
        seen.ack++;
        break;
    case TX_MSG_RUN:
    case TX_MSG_GENERATE:
        REQUIRE(reply.type == TX_MSG_RESULT);
        check_result(f);
        break;
    default:
        REQUIRE(0 && "a reply other than ERROR to an unknown request type");
    }
}

static int parses(const uint8_t *raw, size_t n, void *ctx)
{
    te_frame_t f;
    (void)ctx;
    return te_frame_parse(raw, n, TE_MAX_PAYLOAD, &f) == TE_OK;
}

/* A frame the receiver recovered by FEC: only from a body COBS rejected, and exactly the frame
 * te_fec_decode makes of that body. */
static void check_fec(const te_frame_t *f)
{
    static uint8_t raw[TE_FEC_MAX_RAW];
    REQUIRE(wire.event == TE_FEED_ERROR && wire.body_len >= TE_FEC_MIN_BODY);
    const size_t n = te_fec_decode(wire.buf, wire.body_len, raw, parses, NULL);
    REQUIRE(n == TX_HEADER_SIZE + f->length + TX_CRC_SIZE && f->type == raw[1] && f->seq == te_get16(raw + 2));
    REQUIRE(memcmp(f->payload, raw + TX_HEADER_SIZE, f->length) == 0);
    seen.fec[0]++;
}

/* One byte on the device's UART, as te_main.c's loop handles it. */
static void device_put(uint8_t byte)
{
    te_frame_t f;
    te_status_t err;
    const uint8_t *raw;
    oracle_byte(&wire, byte);
    const int ev = te_rx_feed(&decoder, byte, &f, &err);
    if (ev == TE_FEED_FRAME && f.fec) {
        check_fec(&f);
        handle(&f);
        return;
    }
    REQUIRE(ev == wire.event);
    switch (ev) {
    case TE_FEED_FRAME:
        REQUIRE(f.type == wire.raw[1] && f.seq == te_get16(wire.raw + 2) && f.length + 10u == wire.raw_len);
        REQUIRE(memcmp(f.payload, wire.raw + TX_HEADER_SIZE, f.length) == 0);
        handle(&f);
        break;
    case TE_FEED_ERROR: {
        REQUIRE(err == wire.error && (err >> 8) == 0x01);
        const size_t n = te_device_nack(&device, err, &raw);
        const int before = replies;
        te_frame_send(raw, n, 0, host_put); /* NACKs are plain COBS */
        REQUIRE(replies == before + 1 && !reply.fec && reply.payload[0] == (uint8_t)err);
        check_error(TX_SEQ_UNSOLICITED, 1);
        break;
    }
    default:
        break;
    }
}

static void boot(const te_firmware_models_t *m)
{
    models = m;
    memset(m->input, 0, m->input_capacity);
    memset(m->arena, 0, m->arena_bytes);
    ticks = 0;
    layers = 0;
    replies = 0;
    have_prev = 0;
    te_device_init(&device, m, 0x12345678u);
    te_rx_init(&decoder, TE_MAX_PAYLOAD);
    te_rx_init(&host, TX_MAX_PAYLOAD);
    oracle_wire_init(&wire);
    spec.m = m;
    spec.valid = 0;
    const uint8_t *raw;
    const size_t n = te_device_boot_info(&device, &raw);
    te_frame_send(raw, n, 1, host_put);
    REQUIRE(replies == 1 && reply.type == TX_MSG_INFO && reply.seq == TX_SEQ_UNSOLICITED);
}

/* One byte of a frame damaged on its way to the device (record flag bit 4). */
static struct {
    size_t at, count;
    uint8_t how;
} hurt;

static void damaged_put(uint8_t byte)
{
    if (byte == TX_DELIMITER || hurt.count++ != hurt.at) {
        device_put(byte);
        return;
    }
    const uint8_t other = hurt.how | 1u;
    switch (hurt.how & 3u) {
    case 0:
        device_put(byte ^ other ? byte ^ other : (byte == 1 ? 2 : 1)); /* never a delimiter */
        break;
    case 1:
        break;
    case 2:
        device_put(byte);
        device_put(byte);
        break;
    default:
        device_put(byte);
        device_put(other);
        break;
    }
}

static void send_record(const uint8_t *rec, size_t n, size_t *used)
{
    static uint8_t raw[TX_HEADER_SIZE + MAX_RECORD_PAYLOAD + TX_CRC_SIZE];
    const uint8_t flags = rec[0];
    size_t pos = 6;
    uint16_t length = te_get16(rec + 4);
    const int forced = (flags & 2) && n >= pos + 2;
    const uint16_t lie = forced ? te_get16(rec + pos) : 0;
    pos += forced ? 2 : 0;
    const int damaged = (flags & 16) && n >= pos + 2;
    if (damaged) {
        hurt.at = rec[pos];
        hurt.how = rec[pos + 1];
        hurt.count = 0;
        pos += 2;
    }
    if (length > MAX_RECORD_PAYLOAD) length = MAX_RECORD_PAYLOAD;
    if (length > n - pos) length = (uint16_t)(n - pos);
    size_t len = te_frame_build(raw, sizeof raw, rec[1], te_get16(rec + 2), rec + pos, length);
    if (forced || (flags & 4)) {
        if (forced) te_put16(raw + 4, lie);
        uint32_t crc = te_crc32(raw, len - TX_CRC_SIZE, 0) ^ ((flags & 4) ? 1u : 0u);
        te_put32(raw + len - TX_CRC_SIZE, crc);
    }
    void (*sink)(uint8_t) = damaged ? damaged_put : device_put;
    if (!(flags & 8) || !te_fec_send(raw, len, flags & 1, sink)) te_frame_send(raw, len, flags & 1, sink);
    *used = pos + length;
}

static void report(void)
{
    fprintf(stderr, "fuzz_protocol: reached inputs=%lu,%lu info=%lu ack=%lu result=%lu,%lu generate=%lu nack=%lu "
                    "error=%lu fec=%lu,%lu codes=", seen.inputs[0], seen.inputs[1], seen.info, seen.ack,
            seen.result[0], seen.result[1], seen.generate, seen.nack, seen.error, seen.fec[0], seen.fec[1]);
    for (unsigned r = 1; r < 4; ++r)
        for (unsigned c = 0; c < 16; ++c)
            if (seen.code[r][c]) fprintf(stderr, "0x%02X%02X:%lu,", r, c, seen.code[r][c]);
    fprintf(stderr, "\n");
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    atexit(report);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    seen.inputs[data[0] & 1]++;
    boot((data[0] & 1) ? &te_models_denoiser : &te_models);
    const uint8_t *p = data + 1;
    size_t left = size - 1;
    if (data[0] & 2) {
        while (left >= 6 && layers < LAYER_BUDGET) {
            size_t used;
            send_record(p, left, &used);
            p += used;
            left -= used;
        }
    } else {
        for (size_t i = 0; i < left && layers < LAYER_BUDGET; ++i) device_put(p[i]);
    }
    return 0;
}
