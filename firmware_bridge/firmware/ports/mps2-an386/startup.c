/* Reset and exception vectors for the mps2-an386 port (Cortex-M4F), in C. */
#include <stdint.h>

#include "port.h"

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _estack;
extern int main(void);
void TIMER0_Handler(void);

/* Exit statuses QEMU reports when the firmware stops on a fault. */
#define EXIT_HARDFAULT 3
#define EXIT_WATCHDOG 4
#define EXIT_MAIN_RETURNED 5

/* Called by the core's fatal path before port_exit; weak so a port works alone. */
__attribute__((weak)) void te_fatal_report(int status, const char *what)
{
    (void)status;
    (void)what;
}

void Reset_Handler(void)
{
    /* Enable CP10/CP11 (the FPU) before any floating-point instruction runs. */
    *(volatile uint32_t *)0xE000ED88u |= 0xFu << 20;
    __asm__ volatile("dsb\n isb" ::: "memory");
    for (uint32_t *src = &_sidata, *dst = &_sdata; dst < &_edata;) *dst++ = *src++;
    for (uint32_t *dst = &_sbss; dst < &_ebss;) *dst++ = 0;
    main();
    port_exit(EXIT_MAIN_RETURNED);
}

void NMI_Handler(void)
{
    te_fatal_report(EXIT_WATCHDOG, "watchdog");
    port_exit(EXIT_WATCHDOG);
}

void HardFault_Handler(void)
{
    te_fatal_report(EXIT_HARDFAULT, "hard fault");
    port_exit(EXIT_HARDFAULT);
}

static void Default_Handler(void)
{
    te_fatal_report(EXIT_HARDFAULT, "unexpected interrupt");
    port_exit(EXIT_HARDFAULT);
}

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
    /* external interrupts 0..31; only TIMER0 (IRQ 8) is used */
    Default_Handler, Default_Handler, Default_Handler, Default_Handler,
    Default_Handler, Default_Handler, Default_Handler, Default_Handler,
    TIMER0_Handler, Default_Handler, Default_Handler, Default_Handler,
    Default_Handler, Default_Handler, Default_Handler, Default_Handler,
    Default_Handler, Default_Handler, Default_Handler, Default_Handler,
    Default_Handler, Default_Handler, Default_Handler, Default_Handler,
    Default_Handler, Default_Handler, Default_Handler, Default_Handler,
    Default_Handler, Default_Handler, Default_Handler, Default_Handler,
};
