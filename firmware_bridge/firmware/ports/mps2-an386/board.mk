# Arm MPS2 + AN386 (Cortex-M4F, single-precision FPU, hard-float ABI) as QEMU's mps2-an386.
BOARD_CFLAGS := -mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16
BOARD_LD     := mps2_an386.ld
BOARD_SRCS   := ports/cortex-m/startup.c
