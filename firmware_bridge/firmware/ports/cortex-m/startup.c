/* Reset and exception vectors shared by the Cortex-M ports, in C: enable the
 * FPU, copy .data, zero .bss, call main.  External interrupt n is dispatched
 * to IRQn_Handler, a weak alias of the fault path that a port overrides by
 * defining the function (mps2-an386 defines IRQ8_Handler for TIMER0). */
#include <stdint.h>

#include "port.h"

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _sstack, _estack;

#define STACK_PAINT 0x57A0C0DEu

/* Bytes of stack ever used since reset (the stack is painted at reset). */
uint32_t te_stack_used(void)
{
    const uint32_t *p = &_sstack;
    while (p < &_estack && *p == STACK_PAINT) ++p;
    return (uint32_t)((const uint8_t *)&_estack - (const uint8_t *)p);
}
extern int main(void);

/* Exit statuses (QEMU's own exit status under semihosting). */
#define EXIT_HARDFAULT 3
#define EXIT_WATCHDOG 4
#define EXIT_MAIN_RETURNED 5

/* Called before a fault exit; the firmware core sends an ERROR frame. */
__attribute__((weak)) void te_fatal_report(int status, const char *what)
{
    (void)status;
    (void)what;
}

void Reset_Handler(void)
{
#if defined(__ARM_FP)
    /* CP10/CP11 full access (the FPU) before any floating-point instruction runs. */
    *(volatile uint32_t *)0xE000ED88u |= 0xFu << 20;
    __asm__ volatile("dsb\n isb" ::: "memory");
#endif
    for (uint32_t *src = &_sidata, *dst = &_sdata; dst < &_edata;) *dst++ = *src++;
    for (uint32_t *dst = &_sbss; dst < &_ebss;) *dst++ = 0;
    uint32_t *sp;
    __asm__ volatile("mov %0, sp" : "=r"(sp));
    for (volatile uint32_t *p = &_sstack; p < sp - 16;) *p++ = STACK_PAINT;
    main();
    port_exit(EXIT_MAIN_RETURNED);
}

/* The watchdog interrupt is wired to NMI on the boards we know. */
__attribute__((weak)) void NMI_Handler(void)
{
    te_fatal_report(EXIT_WATCHDOG, "watchdog: no progress, stopping");
    port_exit(EXIT_WATCHDOG);
}

void HardFault_Handler(void)
{
    te_fatal_report(EXIT_HARDFAULT, "hard fault");
    port_exit(EXIT_HARDFAULT);
}

void Default_Handler(void)
{
    te_fatal_report(EXIT_HARDFAULT, "unexpected exception");
    port_exit(EXIT_HARDFAULT);
}

#define TE_WEAK_IRQ(n) void IRQ##n##_Handler(void) __attribute__((weak, alias("Default_Handler")));
#define TE_IRQS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13) X(14) X(15) \
    X(16) X(17) X(18) X(19) X(20) X(21) X(22) X(23) X(24) X(25) X(26) X(27) X(28) X(29) X(30) X(31)
TE_IRQS(TE_WEAK_IRQ)
#define TE_IRQ_ENTRY(n) IRQ##n##_Handler,

__attribute__((section(".isr_vector"), used)) static void (*const vectors[16 + 32])(void) = {
    (void (*)(void))(&_estack),
    Reset_Handler,
    NMI_Handler,
    HardFault_Handler,
    Default_Handler, /* MemManage */
    Default_Handler, /* BusFault */
    Default_Handler, /* UsageFault */
    0, 0, 0, 0,
    Default_Handler, /* SVCall */
    Default_Handler, /* DebugMon */
    0,
    Default_Handler, /* PendSV */
    Default_Handler, /* SysTick */
    TE_IRQS(TE_IRQ_ENTRY)
};
