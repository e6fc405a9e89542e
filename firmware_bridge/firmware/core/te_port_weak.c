/* Defaults for the OPTIONAL port functions (ports/port.h).  Weak, so a port
 * overrides any of them by simply defining it. */
#include "port.h"

__attribute__((weak)) const char *port_board_name(void) { return "cortex-m"; }

__attribute__((weak)) int port_gpio_marker(int on)
{
    (void)on;
    return 0;
}

__attribute__((weak)) uint64_t port_ticks_restart(void) { return port_ticks(); }

__attribute__((weak)) void port_watchdog_feed(void) {}

__attribute__((weak)) void port_uart_flush(void) {}

__attribute__((weak)) void port_idle(void) {}

#if defined(__arm__)
__attribute__((weak)) void port_reset(void)
{
    /* SCB->AIRCR = VECTKEY | SYSRESETREQ: architectural on every Cortex-M. */
    volatile uint32_t *const aircr = (volatile uint32_t *)0xE000ED0Cu;
    __asm__ volatile("dsb" ::: "memory");
    *aircr = (0x05FAu << 16) | (1u << 2);
    __asm__ volatile("dsb" ::: "memory");
    for (;;) {}
}
#else
__attribute__((weak)) void port_reset(void) {}
#endif

__attribute__((weak)) void port_exit(int status)
{
    (void)status;
    for (;;) {}
}
