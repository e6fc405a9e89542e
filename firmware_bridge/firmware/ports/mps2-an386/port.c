/* Port: Arm MPS2 with the AN386 FPGA image (Cortex-M4F), as emulated by
 * `qemu-system-arm -M mps2-an386`.  No vendor SDK and no CMSIS: the few
 * registers used are written out below from the CMSDK and MPS2 documents.
 *
 *   UART0     CMSDK APB UART at 0x40004000, polled, 115200 8N1 (QEMU ignores the rate);
 *             its RX interrupt (IRQ 0) only wakes the core from WFI between requests
 *   TIMER0    CMSDK APB timer at 0x40000000, 25 MHz down-counter, IRQ 8 on wrap
 *   watchdog  CMSDK APB watchdog at 0x40008000, interrupt on NMI
 *   exit      semihosting SYS_EXIT_EXTENDED (needs -semihosting-config enable=on)
 * Under `-icount shift=0` one guest instruction is one nanosecond of virtual
 * time, so one 25 MHz tick is 40 instructions, the same on every run. */
#include <stdint.h>

#include "port.h"

#define REG(addr) (*(volatile uint32_t *)(addr))

#define SYSCLK_HZ 25000000u
#define BAUD 115200u

#define UART0_DATA REG(0x40004000u)
#define UART0_STATE REG(0x40004004u)
#define UART0_CTRL REG(0x40004008u)
#define UART0_INT REG(0x4000400Cu)
#define UART0_BAUDDIV REG(0x40004010u)
#define UART0_RX_IRQ 0u
#define UART_STATE_TXFULL (1u << 0)
#define UART_STATE_RXFULL (1u << 1)

#define TIMER0_CTRL REG(0x40000000u)
#define TIMER0_VALUE REG(0x40000004u)
#define TIMER0_RELOAD REG(0x40000008u)
#define TIMER0_INT REG(0x4000000Cu)
#define TIMER0_IRQ 8u

#define WDOG_LOAD REG(0x40008000u)
#define WDOG_CTRL REG(0x40008008u)
#define WDOG_INTCLR REG(0x4000800Cu)
#define WDOG_LOCK REG(0x40008C00u)
#define WDOG_UNLOCK_KEY 0x1ACCE551u
/* A segment runs for well under 10 million instructions (0.01 s of virtual
 * time); half a second without a feed is a hang. */
#define WDOG_TICKS (SYSCLK_HZ / 2u)

#define NVIC_ISER0 REG(0xE000E100u)
#define NVIC_ICER0 REG(0xE000E180u)
#define NVIC_ICPR0 REG(0xE000E280u)

static volatile uint32_t timer_wraps;

void IRQ8_Handler(void) /* TIMER0 */
{
    TIMER0_INT = 1u;
    timer_wraps++;
}

/* Only wakes the core from port_idle (the only time it is enabled); the byte
 * stays in DATA until port_uart_getc reads it. */
void IRQ0_Handler(void) /* UART0 RX */
{
    UART0_INT = 1u << 1;
}

void port_init(void)
{
    UART0_BAUDDIV = SYSCLK_HZ / BAUD;
    UART0_CTRL = 0x3u | (1u << 3); /* TX and RX enabled, RX interrupt */

    TIMER0_CTRL = 0u;
    TIMER0_RELOAD = 0xFFFFFFFFu;
    TIMER0_VALUE = 0xFFFFFFFFu;
    TIMER0_INT = 1u;
    TIMER0_CTRL = (1u << 0) | (1u << 3); /* enable, interrupt on wrap */
    /* The UART RX interrupt is enabled only while the core sleeps (port_idle): a byte that arrives
     * while a measured interval runs (a host retransmitting on a noisy line) must not add its
     * handler's instructions to the interval. */
    NVIC_ISER0 = 1u << TIMER0_IRQ;
    __asm__ volatile("cpsie i" ::: "memory");

    WDOG_LOCK = WDOG_UNLOCK_KEY;
    WDOG_LOAD = WDOG_TICKS;
    WDOG_CTRL = 1u; /* interrupt (NMI) on the first expiry */
    WDOG_LOCK = 0u;
}

int port_uart_getc(void)
{
    if (!(UART0_STATE & UART_STATE_RXFULL)) return -1;
    return (int)(UART0_DATA & 0xFFu);
}

void port_uart_putc(uint8_t byte)
{
    while (UART0_STATE & UART_STATE_TXFULL) {}
    UART0_DATA = byte;
}

uint64_t port_ticks(void)
{
    uint32_t hi, value, pending;
    do {
        hi = timer_wraps;
        value = TIMER0_VALUE;
        pending = TIMER0_INT & 1u;
    } while (hi != timer_wraps);
    /* A wrap whose interrupt has not run yet: the counter restarted near the top. */
    if (pending && value > 0x80000000u) hi++;
    return ((uint64_t)hi << 32) | (uint64_t)(0xFFFFFFFFu - value);
}

/* Writing VALUE makes QEMU's timer count its next tick one full period (40
 * instructions) after the write, whatever the phase was: an interval measured
 * from here spans floor(instructions / 40) ticks on every run, where a free-
 * running counter gives that or one more depending on where the interval
 * started.  The value written is the one read, so the count stays monotonic. */
uint64_t port_ticks_restart(void)
{
    __asm__ volatile("cpsid i" ::: "memory");
    uint32_t value = TIMER0_VALUE;
    if (TIMER0_INT & 1u) {
        /* A wrap not yet serviced: account for it here, and drop its pending
         * interrupt so the handler does not count it a second time. */
        TIMER0_INT = 1u;
        NVIC_ICPR0 = 1u << TIMER0_IRQ;
        timer_wraps++;
        value = TIMER0_VALUE;
    }
    TIMER0_VALUE = value;
    __asm__ volatile("cpsie i" ::: "memory");
    return port_ticks();
}

uint32_t port_tick_hz(void) { return SYSCLK_HZ; }

const char *port_board_name(void) { return "qemu-mps2-an386"; }

void port_watchdog_feed(void)
{
    WDOG_LOCK = WDOG_UNLOCK_KEY;
    WDOG_INTCLR = 1u; /* clearing the interrupt reloads the counter */
    WDOG_LOCK = 0u;
}

/* Sleep until the next byte.  The watchdog is stopped meanwhile: an idle
 * device waits for its host as it takes (under QEMU, virtual time
 * runs at wall-clock speed while the core sleeps). */
void port_idle(void)
{
    WDOG_LOCK = WDOG_UNLOCK_KEY;
    WDOG_CTRL = 0u;
    WDOG_LOCK = 0u;
    /* Masked, so a byte arriving after the test still ends the WFI (as a
     * pending interrupt) instead of being serviced just before it. */
    __asm__ volatile("cpsid i" ::: "memory");
    NVIC_ISER0 = 1u << UART0_RX_IRQ;
    if (!(UART0_STATE & UART_STATE_RXFULL)) __asm__ volatile("dsb\n wfi" ::: "memory");
    __asm__ volatile("cpsie i" ::: "memory");
    NVIC_ICER0 = 1u << UART0_RX_IRQ;
    WDOG_LOCK = WDOG_UNLOCK_KEY;
    WDOG_INTCLR = 1u;
    WDOG_CTRL = 1u;
    WDOG_LOCK = 0u;
}

void port_exit(int status)
{
    /* SYS_EXIT_EXTENDED: QEMU exits with `status` as its own exit code. */
    static volatile uint32_t block[2];
    block[0] = 0x20026u; /* ADP_Stopped_ApplicationExit */
    block[1] = (uint32_t)status;
    register uint32_t r0 __asm__("r0") = 0x20u;
    register uint32_t r1 __asm__("r1") = (uint32_t)block;
    __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    for (;;) {}
}
