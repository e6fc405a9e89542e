/* libFuzzer target: arbitrary bytes through the MLPerf Tiny DUT command parser
 * (apps/mlperf_main.c, `make APP=mlperf`) with the run's classifier linked in,
 * under AddressSanitizer and UBSan.  Built and run by reliability_c.py
 * (`tinyexit reliability fuzz-c --target mlperf`).
 *
 * The app is compiled into this file (its main renamed) so the fuzzer calls
 * its byte handler directly and resets its state between inputs.  Besides the
 * sanitizers: every '%' gets exactly one "m-ready" line, every other line
 * starts with "m-" or "e-" (the help text excepted) and ends with CR LF, and no
 * command runs unbounded: an input stops after 64 executed segments (a large
 * `infer N W` is cut there, by a longjmp out of the watchdog feed the app
 * calls after every segment). */
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>

#define main te_mlperf_app_main
#include "../apps/mlperf_main.c"
#undef main

#define SEGMENT_BUDGET 64u

static jmp_buf out_of_budget;
static uint32_t segments_run;
static uint64_t fake_ticks;
static char line[4096];
static size_t line_len;
static unsigned long readies, lines, commands_seen, infers, budget_cuts;

#define REQUIRE(cond)                                                                                 \
    do {                                                                                              \
        if (!(cond)) {                                                                                \
            fprintf(stderr, "fuzz_mlperf: protocol violation: %s (line %d)\n", #cond, __LINE__);        \
            abort();                                                                                  \
        }                                                                                             \
    } while (0)

void port_init(void) {}
int port_uart_getc(void) { return -1; }
uint64_t port_ticks(void) { return fake_ticks += 977; }
uint32_t port_tick_hz(void) { return 25000000u; }

void port_watchdog_feed(void)
{
    if (++segments_run > SEGMENT_BUDGET) longjmp(out_of_budget, 1);
}

void port_uart_putc(uint8_t byte)
{
    REQUIRE(line_len < sizeof line);
    line[line_len++] = (char)byte;
    if (byte != '\n') return;
    REQUIRE(line_len >= 2 && line[line_len - 2] == '\r');
    line[line_len - 2] = 0;
    const int ok = !strncmp(line, "m-", 2) || !strncmp(line, "e-", 2) || !strncmp(line, "name, timestamp", 15);
    REQUIRE(ok);
    if (!strcmp(line, "m-ready")) readies++;
    if (!strncmp(line, "m-infer-done", 12)) infers++;
    lines++;
    line_len = 0;
}

static void report(void)
{
    fprintf(stderr, "fuzz_mlperf: reached commands=%lu lines=%lu infers=%lu budget_cuts=%lu\n", commands_seen, lines,
            infers, budget_cuts);
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
    memset(te_models.input, 0, te_models.input_capacity);
    cmd_len = 0;
    cmd_overflow = 0;
    db_size = db_pos = 0;
    exit_taken = -1;
    last_logits = 0;
    last_n = 0;
    segments_run = 0;
    line_len = 0;
    if (setjmp(out_of_budget)) { /* a long `infer` was cut: its output is incomplete, stop here */
        budget_cuts++;
        return 0;
    }
    for (size_t i = 0; i < size; ++i) {
        const unsigned long before = readies;
        on_byte(data[i]);
        if (data[i] == '%') {
            commands_seen++;
            REQUIRE(readies == before + 1 && line_len == 0);
        } else {
            REQUIRE(readies == before);
        }
    }
    return 0;
}
