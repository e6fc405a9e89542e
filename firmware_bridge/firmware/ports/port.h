/* The porting layer: everything a board supplies to run tinyexit firmware.
 *
 * A port is one .c file implementing the REQUIRED functions below (and any
 * OPTIONAL ones it can do better than the defaults in core/te_port_weak.c),
 * plus its startup code and linker script.  Nothing else in the firmware
 * touches hardware.  docs/porting.md walks through a new board. */
#ifndef TE_PORT_H
#define TE_PORT_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- REQUIRED ---------------------------------------------------------- */

/* Bring up clocks, the UART (8N1 at the board's baud rate), the tick counter
 * and, if the board has one, a watchdog.  Called once before anything else. */
void port_init(void);

/* One received byte (0..255), or -1 when none is waiting.  Must not block. */
int port_uart_getc(void);

/* Send one byte; may block until the UART accepts it. */
void port_uart_putc(uint8_t byte);

/* A free-running, monotonic tick counter and its rate in Hz.  Timing of
 * segments and layers is reported in these ticks. */
uint64_t port_ticks(void);
/* OPTIONAL: port_ticks() at the start of a measured interval.  A port whose
 * counter runs from a prescaled clock restarts the prescaler's phase here, so
 * that an interval of the same instructions always spans the same number of
 * ticks (the default just returns port_ticks()). */
uint64_t port_ticks_restart(void);
uint32_t port_tick_hz(void);

/* ---- OPTIONAL (weak defaults in core/te_port_weak.c) -------------------- */

/* A short board name reported in INFO (default: "cortex-m"). */
const char *port_board_name(void);

/* Raise (1) / lower (0) a GPIO around each inference so an energy monitor
 * (PPK2, LPM01A, Joulescope) can cut the window.  Returns 1 if the board has
 * such a pin, else 0 (default: no pin). */
int port_gpio_marker(int on);

/* Keep the watchdog quiet; called from every wait loop (default: nothing). */
void port_watchdog_feed(void);

/* Restart the device (default: SCB AIRCR SYSRESETREQ). */
void port_reset(void);

/* End the program with a status (default: spin forever).  Under QEMU this
 * is a semihosting exit, so QEMU's exit status is `status`. */
void port_exit(int status);

/* Flush pending UART output (default: nothing). */
void port_uart_flush(void);

/* Nothing received: wait for the next byte or interrupt, e.g. with WFI
 * (default: return at once, i.e. busy polling).  Called only between
 * requests, never inside a timed region. */
void port_idle(void);

#ifdef __cplusplus
}
#endif
#endif
