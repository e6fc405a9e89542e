/* MLPerf Tiny DUT protocol instead of tinyexit's (make APP=mlperf), so the
 * MLCommons host runner can drive a tinyexit model for performance and
 * accuracy runs.  ASCII commands end with '%'; every reply line starts with
 * "m-" (or "e-" for an error) and every command ends with "m-ready".
 * docs/mlperf-tiny.md gives the exact command mapping:
 *   name               m-name-dut-[tinyexit]
 *   profile            m-profile-[...] and m-model-[<model> <artifact hash>]
 *   timestamp          m-lap-us-<microseconds of the port's tick counter>
 *   db load N          m-[Expecting N bytes]       (N = the model's input bytes)
 *   db <hex bytes>     m-load-done once N bytes arrived
 *   db print           m-buffer-xx-xx-... lines
 *   infer N [W]        W warm-up runs, timestamps around N timed runs, then results
 *   results            m-results-[p0,p1,...]  softmax of the logits of the exit taken
 * One inference runs the segments with the early-exit policy compiled in
 * (TE_MLPERF_POLICY_ID / TE_MLPERF_THRESHOLD, from the manifest), or all
 * segments when there is none. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "port.h"
#include "te_models.h"
#include "te_policy.h"

#define CMD_SIZE 80
#define MAX_HEX_LINE 1024 /* a "db <hex>" command may be longer than other commands */

void te_layer_done(uint16_t layer) { (void)layer; }

static char cmd[MAX_HEX_LINE + 1];
static uint32_t db_size, db_pos;
static int exit_taken = -1;
static const int8_t *last_logits;
static int last_n;

static void out(const char *s)
{
    while (*s) port_uart_putc((uint8_t)*s++);
}

static void out_u(uint64_t v)
{
    char buf[24];
    int n = 0;
    do { buf[n++] = (char)('0' + v % 10); v /= 10; } while (v);
    while (n) port_uart_putc((uint8_t)buf[--n]);
}

static void out_hex2(uint8_t b)
{
    static const char hex[] = "0123456789abcdef";
    port_uart_putc((uint8_t)hex[b >> 4]);
    port_uart_putc((uint8_t)hex[b & 15]);
}

/* A probability in [0, 1] with three decimals, as the reference firmware prints them. */
static void out_p(float p)
{
    uint32_t milli = (uint32_t)(p * 1000.0f + 0.5f);
    if (milli > 1000u) milli = 1000u;
    out_u(milli / 1000u);
    port_uart_putc('.');
    port_uart_putc((uint8_t)('0' + milli / 100u % 10u));
    port_uart_putc((uint8_t)('0' + milli / 10u % 10u));
    port_uart_putc((uint8_t)('0' + milli % 10u));
}

static void timestamp(void)
{
    const uint64_t ticks = port_ticks(), hz = port_tick_hz();
    out("m-lap-us-");
    /* whole seconds apart: ticks * 10^6 would wrap after 2^64 / 10^6 ticks (30 hours at 168 MHz) */
    out_u(ticks / hz * 1000000u + ticks % hz * 1000000u / hz);
    out("\r\n");
}

static void infer_once(void)
{
    const te_model_t *m = te_models.segments;
    te_policy_t policy = {0, 0, {0}};
#ifdef TE_MLPERF_POLICY_ID
    policy.id = TE_MLPERF_POLICY_ID;
    policy.n_params = 1;
    policy.params[0] = TE_MLPERF_THRESHOLD;
#endif
    uint8_t top1[TX_MAX_SEGMENTS];
    memcpy(te_models.arena + m->segments[0].in_offset, te_models.input, m->segments[0].in_bytes);
    for (int k = 0; k < m->num_segments; ++k) {
        const te_segment_t *s = &m->segments[k];
        s->run(te_models.arena);
        port_watchdog_feed();
        exit_taken = k;
        last_logits = te_models.arena + s->logits_offset;
        last_n = s->num_classes;
        top1[k] = (uint8_t)te_argmax(last_logits, last_n);
        if (policy.n_params && k + 1 < m->num_segments &&
            te_policy_passes(&policy, k, last_logits, last_n, s->logits_scale, s->logits_zp, top1))
            return;
    }
}

static void results(void)
{
    if (exit_taken < 0) {
        out("e-[No inference has run]\r\n");
        return;
    }
    const te_segment_t *s = &te_models.segments->segments[exit_taken];
    float e[TX_MAX_LOGITS], sum = 0.0f;
    const int top = te_argmax(last_logits, last_n);
    for (int i = 0; i < last_n; ++i) {
        e[i] = expf((float)(last_logits[i] - last_logits[top]) * s->logits_scale);
        sum += e[i];
    }
    out("m-results-[");
    for (int i = 0; i < last_n; ++i) {
        if (i) port_uart_putc(',');
        out_p(e[i] / sum);
    }
    out("]\r\n");
}

static int parse_uint(const char *s, uint32_t *v)
{
    if (!s || !*s) return 0;
    uint64_t x = 0;
    for (; *s; ++s) {
        if (*s < '0' || *s > '9' || x > 100000000u) return 0;
        x = x * 10u + (uint64_t)(*s - '0');
    }
    *v = (uint32_t)x;
    return 1;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static void db(char *arg, char *rest)
{
    const uint32_t need = te_models.segments->segments[0].in_bytes;
    if (!arg) {
        out("e-[Command 'db' requires a subcommand]\r\n");
    } else if (!strcmp(arg, "load")) {
        uint32_t n;
        if (!parse_uint(rest, &n) || n == 0) {
            out("e-[Command 'db load' must be >0 bytes]\r\n");
        } else if (n > te_models.input_capacity) {
            out("e-[Supplied buffer size exceeds the input buffer]\r\n");
        } else {
            db_size = n;
            db_pos = 0;
            out("m-[Expecting ");
            out_u(n);
            out(" bytes]\r\n");
            if (n != need) out("e-[The model takes a different number of input bytes]\r\n");
        }
    } else if (!strcmp(arg, "print")) {
        for (uint32_t i = 0; i < db_pos; ++i) {
            if (i % 8 == 0) out("m-buffer-");
            out_hex2(te_models.input[i]);
            out(i % 8 == 7 || i + 1 == db_pos ? "\r\n" : "-");
        }
    } else {
        const size_t n = strlen(arg);
        if (n & 1u) {
            out("e-[Insufficent number of hex digits]\r\n");
            return;
        }
        for (size_t i = 0; i < n; ++i) {
            if (hexval(arg[i]) < 0) {
                out("e-[Invalid hex digit]\r\n");
                return;
            }
        }
        for (size_t i = 0; i < n && db_pos < db_size; i += 2) {
            te_models.input[db_pos++] = (uint8_t)(hexval(arg[i]) << 4 | hexval(arg[i + 1])); /* < db_size <= capacity */
            if (db_pos == db_size) out("m-load-done\r\n");
        }
    }
}

static void infer(char *n_arg, char *w_arg)
{
    uint32_t n = 1, w = 10;
    if ((n_arg && (!parse_uint(n_arg, &n) || n == 0)) || (w_arg && !parse_uint(w_arg, &w))) {
        out("e-[infer N [W]: N > 0 and W >= 0 iterations]\r\n");
        return;
    }
    if (db_pos != te_models.segments->segments[0].in_bytes) {
        out("e-[Load exactly the model's input bytes with 'db' first]\r\n");
        return;
    }
    out("m-warmup-start-");
    out_u(w);
    out("\r\n");
    while (w--) infer_once();
    out("m-warmup-done\r\nm-infer-start-");
    out_u(n);
    out("\r\n");
    timestamp();
    port_gpio_marker(1);
    while (n--) infer_once();
    port_gpio_marker(0);
    timestamp();
    out("m-infer-done\r\n");
    results();
}

/* The next space-separated word of *s (NUL-terminated in place), or 0. */
static char *word(char **s)
{
    while (**s == ' ') ++*s;
    if (!**s) return 0;
    char *start = *s;
    while (**s && **s != ' ') ++*s;
    if (**s) *(*s)++ = 0;
    return start;
}

static void command(char *line)
{
    char *tok = word(&line);
    char *a1 = tok ? word(&line) : 0;
    char *a2 = a1 ? word(&line) : 0;
    if (!tok) {
        out("e-[Empty command]\r\n");
    } else if (!strcmp(tok, "name")) {
        out("m-name-dut-[tinyexit]\r\n");
    } else if (!strcmp(tok, "timestamp")) {
        timestamp();
    } else if (!strcmp(tok, "profile")) {
#ifdef TE_MLPERF_MODEL  /* the runner's stock tests file matches this id (ic01, kws01, vww01, ad01) */
        out("m-profile-[tinyexit firmware, MLPerf Tiny DUT mode]\r\nm-model-[" TE_MLPERF_MODEL "]\r\n");
#else
        out("m-profile-[tinyexit firmware, MLPerf Tiny DUT mode]\r\nm-model-[");
        out(te_models.segments->name);
        out(" ");
        for (int i = 0; i < 8; ++i) out_hex2(te_models.artifact_hash[i]);
        out("]\r\n");
#endif
    } else if (!strcmp(tok, "help")) {
        out("name, timestamp, profile, db load N, db HEX, db print, infer N [W], results\r\n");
    } else if (!strcmp(tok, "db")) {
        db(a1, a2);
    } else if (!strcmp(tok, "infer")) {
        infer(a1, a2);
    } else if (!strcmp(tok, "results")) {
        results();
    } else {
        out("e-[Unknown command: ");
        out(tok);
        out("]\r\n");
    }
    out("m-ready\r\n");
}

static size_t cmd_len;
static int cmd_overflow;

/* One received byte: commands collect until '%' (fuzz/fuzz_mlperf.c drives this directly). */
static void on_byte(uint8_t c)
{
    if (c == '%') {
        cmd[cmd_len] = 0;
        if (cmd_overflow) out("e-[Command too long]\r\nm-ready\r\n");
        else command(cmd);
        cmd_len = 0;
        cmd_overflow = 0;
    } else if (c == '\r' || c == '\n') {
        return;
    } else if (cmd_len < MAX_HEX_LINE) {
        cmd[cmd_len++] = (char)c;
    } else {
        cmd_overflow = 1; /* never written past the buffer; the command is refused at its '%' */
    }
}

int main(void)
{
    port_init();
    out("m-init-done\r\nm-ready\r\n");
    for (;;) {
        const int c = port_uart_getc();
        if (c < 0) {
            port_watchdog_feed();
            port_idle();
            continue;
        }
        on_byte((uint8_t)c);
    }
}
