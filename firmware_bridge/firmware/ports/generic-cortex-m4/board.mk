# A generic Cortex-M4F board; see docs/porting.md.  TODO(board): -DTE_CPU_HZ=<core clock>.
BOARD_CFLAGS := -mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16
BOARD_LD     := generic_cortex_m4.ld
BOARD_SRCS   := ports/cortex-m/startup.c
