/* Port: a generic Cortex-M4F board (e.g. an STM32F4/nRF52/Kinetis part) with
 * the board-specific hooks left to you.  It compiles as is (CI builds it),
 * and it runs the model correctly, but until you fill in the three TODOs the
 * UART says nothing.  docs/porting.md walks through each step.
 *
 *   ticks   DWT->CYCCNT, the cycle counter every Cortex-M4 has: real cycles
 *           at TE_CPU_HZ (set it to your core clock)
 *   UART    TODO(board): board_uart_init / board_uart_getc / board_uart_putc
 *   GPIO    TODO(board, optional): board_marker for an energy monitor
 *   reset   SCB AIRCR (architectural; core/te_port_weak.c)
 */
#include <stdint.h>

#include "port.h"

#ifndef TE_CPU_HZ
#define TE_CPU_HZ 64000000u /* TODO(board): your core clock in Hz, e.g. -DTE_CPU_HZ=168000000 */
#endif
#ifndef TE_BAUD
#define TE_BAUD 115200u
#endif

#define REG(addr) (*(volatile uint32_t *)(addr))
#define DEMCR REG(0xE000EDFCu)
#define DWT_CTRL REG(0xE0001000u)
#define DWT_CYCCNT REG(0xE0001004u)

/* ---- TODO(board): replace these three with your UART driver -------------
 * Clock the UART, route its pins, 8N1 at TE_BAUD; getc must not block. */
__attribute__((weak)) void board_uart_init(uint32_t baud) { (void)baud; }
__attribute__((weak)) int board_uart_getc(void) { return -1; }
__attribute__((weak)) void board_uart_putc(uint8_t byte) { (void)byte; }
/* ---- TODO(board, optional): a GPIO wired to the energy monitor's trigger;
 * return 1 once implemented so the host may cut energy windows. */
__attribute__((weak)) int board_marker(int on)
{
    (void)on;
    return 0;
}

static uint32_t last_cycles, wraps;

void port_init(void)
{
    DEMCR |= 1u << 24;   /* TRCENA: enable the DWT */
    DWT_CYCCNT = 0;
    DWT_CTRL |= 1u;      /* CYCCNTENA */
    board_uart_init(TE_BAUD);
}

int port_uart_getc(void) { return board_uart_getc(); }

void port_uart_putc(uint8_t byte) { board_uart_putc(byte); }

/* CYCCNT is 32 bits (about 25 s at 168 MHz), so wraps are counted here in
 * software: a wrap is seen if the counter is read at least once per period,
 * which port_watchdog_feed below makes sure of (the firmware calls it after
 * every segment and in its idle loop; no segment runs for 25 s). */
uint64_t port_ticks(void)
{
    const uint32_t now = DWT_CYCCNT;
    if (now < last_cycles) wraps++;
    last_cycles = now;
    return ((uint64_t)wraps << 32) | now;
}

uint32_t port_tick_hz(void) { return TE_CPU_HZ; }

const char *port_board_name(void) { return "generic-cortex-m4"; }

int port_gpio_marker(int on) { return board_marker(on); }

/* Called after every segment and while idle.  Reading the counter here keeps
 * the wrap count right through long idle periods and through MLPerf's `infer N`
 * (N inferences between two timestamps may take longer than one wrap). */
void port_watchdog_feed(void)
{
    (void)port_ticks();
    /* TODO(board, optional): feed your watchdog here, keeping the line above. */
}
