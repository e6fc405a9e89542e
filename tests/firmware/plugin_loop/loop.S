@ A known instruction sequence for the counting plugin's test (tests/firmware/test_plugin.py).
@ Between the two calls of `mark` the core executes exactly
@   bx lr (return from the first mark), ldr r0 (literal), N x loop body (9), bl mark
@ with N = LOOPS; the loop body is one instruction of each class the plugin tells apart.
    .syntax unified
    .cpu cortex-m4
    .thumb
    .equ LOOPS, 1000

    .text
    .word 0x20010000            @ initial stack pointer (SSRAM2)
    .word _start + 1            @ reset
    .thumb_func
    .global _start
_start:
    bl mark
    ldr r0, =LOOPS
loop:
    smlad r2, r3, r4, r2        @ mac
    ldr.w r5, [sp, #-8]         @ load
    str r5, [sp, #-12]          @ store
    push {r4, r5}               @ store multiple, 2 registers
    pop {r4, r5}                @ load multiple, 2 registers
    udiv r6, r5, r0             @ div
    nop                         @ other
    subs r0, #1                 @ other
    bne loop                    @ conditional branch
    bl mark
    movs r0, #0x18              @ semihosting SYS_EXIT, ADP_Stopped_ApplicationExit
    ldr r1, =0x20026
    bkpt 0xab
1:  b 1b

    .thumb_func
    .global mark
mark:
    bx lr
    .ltorg
