/* te_count: a QEMU TCG plugin that counts the guest's executed instructions
 * exactly, per coarse Thumb-2 class, and reports the running counts each time
 * the guest reaches a marker address.
 *
 * The firmware measures every interval between two calls of port_ticks()
 * (segments, exit decisions, sampler phases).  Given mark=<address of
 * port_ticks>, the plugin writes one line per call to out=<file>:
 *     <total> <load> <store> <mac> <branch> <jump> <div> <other> <lsm_regs>
 * (running counts when the call starts), so the difference of two lines is
 * the exact instruction count of the interval the firmware timed with its
 * 25 MHz timer (whose ticks are 40 instructions under -icount shift=0).
 *
 * Counting is one inline add per instruction, which QEMU runs before the
 * instruction; an instruction QEMU re-executes for icount I/O is translated
 * "memory callbacks only", so it is not counted twice.
 *
 * Debian ships no qemu-plugin.h: the few functions and types of the stable
 * plugin API (version 1, QEMU 4.2 .. 8.x) used here are declared below. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXPORT __attribute__((visibility("default")))

typedef uint64_t qemu_plugin_id_t;
typedef struct {
    const char *target_name;
    struct {
        int min;
        int cur;
    } version;
    bool system_emulation;
    union {
        struct {
            int smp_vcpus;
            int max_vcpus;
        } system;
    };
} qemu_info_t;
struct qemu_plugin_tb;
struct qemu_plugin_insn;
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_CB_R_REGS, QEMU_PLUGIN_CB_RW_REGS };
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*qemu_plugin_vcpu_udata_cb_t)(unsigned int vcpu_index, void *userdata);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
void qemu_plugin_register_vcpu_insn_exec_cb(struct qemu_plugin_insn *insn, qemu_plugin_vcpu_udata_cb_t cb,
                                           enum qemu_plugin_cb_flags flags, void *userdata);
void qemu_plugin_register_vcpu_insn_exec_inline(struct qemu_plugin_insn *insn, enum qemu_plugin_op op, void *ptr,
                                               uint64_t imm);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void *userdata);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx);
const void *qemu_plugin_insn_data(const struct qemu_plugin_insn *insn);
size_t qemu_plugin_insn_size(const struct qemu_plugin_insn *insn);
uint64_t qemu_plugin_insn_vaddr(const struct qemu_plugin_insn *insn);
void qemu_plugin_outs(const char *string);

EXPORT int qemu_plugin_version = 1;

/* Classes; the order is the column order of the output. */
enum { C_LOAD, C_STORE, C_MAC, C_BRANCH, C_JUMP, C_DIV, C_OTHER, C_LSM_REGS, C_N };

/* One vCPU (mps2-an386 has one core): plain counters are exact. */
static uint64_t counts[C_N];
static uint64_t marks[8];
static int n_marks;
static FILE *out;

static int popcount16(unsigned v)
{
    int n = 0;
    for (; v; v &= v - 1) n++;
    return n;
}

/* Coarse class of one Thumb/Thumb-2 instruction (ARMv7-M encodings, ARM DDI 0403);
 * *regs gets the register count of a load/store multiple. */
static int classify(const uint8_t *b, size_t size, int *regs)
{
    const unsigned hw1 = (unsigned)b[0] | ((unsigned)b[1] << 8);
    *regs = 0;
    if (size == 2) {
        if ((hw1 & 0xF800u) == 0x4800u) return C_LOAD;                        /* LDR literal */
        if ((hw1 & 0xF000u) == 0x5000u) return ((hw1 >> 9) & 7u) < 3u ? C_STORE : C_LOAD;
        if ((hw1 & 0xE000u) == 0x6000u || (hw1 & 0xE000u) == 0x8000u)         /* imm offset, halfword, SP */
            return (hw1 & 0x0800u) ? C_LOAD : C_STORE;
        if ((hw1 & 0xFE00u) == 0xB400u) { *regs = popcount16(hw1 & 0x1FFu); return C_STORE; }  /* PUSH */
        if ((hw1 & 0xFE00u) == 0xBC00u) { *regs = popcount16(hw1 & 0x1FFu); return C_LOAD; }   /* POP */
        if ((hw1 & 0xF000u) == 0xC000u) { *regs = popcount16(hw1 & 0xFFu); return (hw1 & 0x0800u) ? C_LOAD : C_STORE; }
        if ((hw1 & 0xF000u) == 0xD000u) return ((hw1 >> 8) & 0xFu) < 0xEu ? C_BRANCH : C_OTHER;
        if ((hw1 & 0xF800u) == 0xE000u) return C_JUMP;                        /* B */
        if ((hw1 & 0xFF00u) == 0x4700u) return C_JUMP;                        /* BX, BLX */
        if ((hw1 & 0xF500u) == 0xB100u) return C_BRANCH;                      /* CBZ, CBNZ */
        if ((hw1 & 0xFFC0u) == 0x4340u) return C_MAC;                         /* MULS */
        return C_OTHER;
    }
    const unsigned hw2 = (unsigned)b[2] | ((unsigned)b[3] << 8);
    if ((hw1 & 0xFE00u) == 0xE800u) {                                         /* 1110100: LDM/STM, dual, table */
        if (hw1 & 0x0040u) {
            if ((hw1 & 0xFFF0u) == 0xE8D0u && (hw2 & 0xFFE0u) == 0xF000u) return C_JUMP;  /* TBB, TBH */
            if ((hw1 & 0x0100u) || (hw1 & 0x0020u)) *regs = 2;                                  /* LDRD/STRD */
            return (hw1 & 0x0010u) ? C_LOAD : C_STORE;
        }
        *regs = popcount16(hw2 & 0xDFFFu);
        return (hw1 & 0x0010u) ? C_LOAD : C_STORE;
    }
    if ((hw1 & 0xEE00u) == 0xEC00u && (hw2 & 0x0E00u) == 0x0A00u)           /* VLDR/VSTR/VLDM/VSTM/VPUSH/VPOP */
        return (hw1 & 0x0010u) ? C_LOAD : C_STORE;
    if ((hw1 & 0xF800u) == 0xF000u && (hw2 & 0x8000u)) {                     /* branches, misc control */
        if (hw2 & 0x5000u) return C_JUMP;                                     /* B.W (T4), BL */
        return ((hw1 >> 6) & 0xFu) < 0xEu ? C_BRANCH : C_OTHER;               /* B<c>.W; else MSR/MRS/DSB... */
    }
    if ((hw1 & 0xFE00u) == 0xF800u) return (hw1 & 0x0010u) ? C_LOAD : C_STORE;  /* LDR/STR{B,H,SB,SH}.W, PLD */
    if ((hw1 & 0xFF80u) == 0xFB00u) return C_MAC;                            /* MUL, MLA, MLS, SMLAD, SMLA<x><y>... */
    if ((hw1 & 0xFF80u) == 0xFB80u) return (hw2 & 0x00F0u) == 0x00F0u ? C_DIV : C_MAC;  /* SDIV/UDIV, long mul */
    return C_OTHER;
}

static void on_mark(unsigned int vcpu, void *udata)
{
    (void)vcpu;
    (void)udata;
    if (!out) return;
    uint64_t total = 0;
    for (int c = 0; c < C_LSM_REGS; ++c) total += counts[c];
    fprintf(out, "%llu", (unsigned long long)total);
    for (int c = 0; c < C_N; ++c) fprintf(out, " %llu", (unsigned long long)counts[c]);
    fputc('\n', out);
    fflush(out); /* the host reads the line as soon as the device's reply arrives */
}

static void on_tb(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    (void)id;
    const size_t n = qemu_plugin_tb_n_insns(tb);
    for (size_t i = 0; i < n; ++i) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        const uint64_t pc = qemu_plugin_insn_vaddr(insn);
        for (int m = 0; m < n_marks; ++m)
            if (pc == marks[m]) qemu_plugin_register_vcpu_insn_exec_cb(insn, on_mark, QEMU_PLUGIN_CB_NO_REGS, 0);
        int regs;
        const int c = classify((const uint8_t *)qemu_plugin_insn_data(insn), qemu_plugin_insn_size(insn), &regs);
        qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64, &counts[c], 1);
        if (regs) qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64, &counts[C_LSM_REGS],
                                                             (uint64_t)regs);
    }
}

static void at_exit(qemu_plugin_id_t id, void *udata)
{
    (void)id;
    (void)udata;
    on_mark(0, 0); /* the final counts: the last line of the file */
    if (out) fclose(out);
    out = 0;
}

EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv)
{
    (void)info;
    const char *path = 0;
    for (int i = 0; i < argc; ++i) {
        if (strncmp(argv[i], "mark=", 5) == 0 && n_marks < (int)(sizeof marks / sizeof marks[0]))
            marks[n_marks++] = strtoull(argv[i] + 5, 0, 0) & ~1ull; /* a Thumb symbol has bit 0 set */
        else if (strncmp(argv[i], "out=", 4) == 0)
            path = argv[i] + 4;
        else {
            qemu_plugin_outs("te_count: unknown argument (use mark=ADDR, out=FILE)\n");
            return -1;
        }
    }
    if (!path) {
        qemu_plugin_outs("te_count: out=FILE missing\n");
        return -1;
    }
    out = fopen(path, "w");
    if (!out) {
        qemu_plugin_outs("te_count: cannot open the out file\n");
        return -1;
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_tb);
    qemu_plugin_register_atexit_cb(id, at_exit, 0);
    return 0;
}
