/* Port: this machine, for the host tier.  The UART is stdin/stdout, ticks are
 * CLOCK_MONOTONIC nanoseconds, end of input ends the program (status 0).
 * Lets the firmware core be tested against recorded transcripts with gcc. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "port.h"

void port_init(void) {}

int port_uart_getc(void)
{
    const int c = getchar();
    if (c == EOF) {
        fflush(stdout);
        exit(0);
    }
    return c;
}

void port_uart_putc(uint8_t byte) { putchar(byte); }

void port_uart_flush(void) { fflush(stdout); }

uint64_t port_ticks(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint32_t port_tick_hz(void) { return 1000000000u; }

const char *port_board_name(void) { return "host (gcc, stdin/stdout)"; }

void port_exit(int status) { exit(status); }
