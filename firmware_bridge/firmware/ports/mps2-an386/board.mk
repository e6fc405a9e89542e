# Cortex-M4F with single-precision FPU, hard-float ABI.
BOARD_CFLAGS := -mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16
BOARD_LD     := mps2_an386.ld
