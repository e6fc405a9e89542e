"""Exact instruction counts under QEMU: the te_count TCG plugin (plugin/te_count.c), built with the host C compiler.

`build_plugin(out_dir)` compiles the plugin once per source hash into out_dir (the
firmware build folder; never into the source tree, whose hash decides firmware
rebuilds).  `plugin_args(so, elf, out)` is the `-plugin` value that makes QEMU
write one line of running counts each time the firmware calls `port_ticks` (the
start and end of every interval the firmware times), and `read_marks(path)` reads
them back.  The difference of two lines is the interval's exact instruction count,
per class; `modelled_cycles` turns class counts into a Cortex-M4 cycle estimate
from the published instruction timings (a model, labelled so, not a measurement).
"""
from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

from tinyexit.errors import UserError

SOURCE = Path(__file__).resolve().parent / "plugin" / "te_count.c"
MARK_SYMBOL = "port_ticks"
# Column order of a line the plugin writes (te_count.c's enum after "total").
CLASSES = ("load", "store", "mac", "branch", "jump", "div", "other")
COLUMNS = ("total",) + CLASSES + ("lsm_regs",)

# Cortex-M4 cycles per instruction of each class, from the Cortex-M4 Technical Reference
# Manual (ARM DDI 0439B, table 3-1).  Coarse on purpose: a load is 2 (pipelined neighbours
# would be N+1), a store 2, a load/store multiple 1+N (the N is counted apart, lsm_regs), a
# conditional branch 1+P/2 with P=2 (taken about half the time; the plugin does not see the
# outcome), an unconditional branch/call/return 1+P with P=2, MUL/MLA/SMLAD/long multiply 1
# (MLA is 2; not told apart), a divide 7 (2..12), everything else 1.
CYCLES_M4 = {"load": 2, "store": 2, "mac": 1, "branch": 2, "jump": 3, "div": 7, "other": 1}
CYCLES_NOTE = ("modelled: Cortex-M4 cycles = sum over instruction classes of count x cycles "
               "(ARM DDI 0439B table 3-1; loads/stores 2, load/store multiple 1+N, branches 1+P with P=2 "
               "taken, multiply-accumulate 1, divide 7), not measured on a chip")


def build_plugin(out_dir: Path, cc: str = "gcc") -> Path:
    """te_count-<hash>.so in out_dir, compiled with the host compiler when missing."""
    src = SOURCE.read_bytes()
    so = Path(out_dir) / f"te_count-{hashlib.sha256(src).hexdigest()[:12]}.so"
    if so.is_file():
        return so
    if shutil.which(cc) is None:
        raise UserError(f"host C compiler '{cc}' not found (needed for the QEMU counting plugin); "
                        "install it with: sudo apt-get install -y gcc")
    so.parent.mkdir(parents=True, exist_ok=True)
    tmp = so.with_suffix(".tmp.so")
    res = subprocess.run([cc, "-shared", "-fPIC", "-O2", "-std=gnu99", "-Wall", "-Wextra", "-Werror",
                          "-o", str(tmp), str(SOURCE)], capture_output=True, text=True)
    if res.returncode != 0:
        raise UserError(f"{SOURCE}: host build of the QEMU plugin failed: {res.stderr.strip()[-300:]}")
    tmp.replace(so)  # atomic: a parallel build never sees half a library
    return so


def symbol_address(elf: Path, name: str = MARK_SYMBOL, nm: str = "arm-none-eabi-nm") -> int:
    """Address of a function symbol of the firmware (Thumb bit cleared)."""
    res = subprocess.run([nm, str(elf)], capture_output=True, text=True)
    for line in res.stdout.splitlines():
        p = line.split()
        if len(p) == 3 and p[2] == name and p[1] in "Tt":
            return int(p[0], 16) & ~1
    raise UserError(f"{elf}: no function '{name}' (the counting plugin marks its calls); rebuild the firmware")


def plugin_args(so: Path, elf: Path, out: Path, symbol: str = MARK_SYMBOL) -> list[str]:
    """QEMU arguments loading the plugin: one count line per call of `symbol` into `out`."""
    return ["-plugin", f"{so},mark={symbol_address(elf, symbol):#x},out={out}"]


def read_marks(path: Path, start: int = 0) -> list[dict]:
    """Count lines from line `start` on (complete lines only: the plugin may be writing the next one)."""
    try:
        text = Path(path).read_text()
    except OSError:
        return []
    lines = text.split("\n")[:-1]  # the last piece has no newline yet (or is empty)
    return [dict(zip(COLUMNS, map(int, line.split()))) for line in lines[start:]]


def difference(a: dict, b: dict) -> dict:
    """Counts of the interval between two marks (b after a)."""
    return {k: b[k] - a[k] for k in COLUMNS}


def add(acc: dict | None, d: dict) -> dict:
    return dict(d) if acc is None else {k: acc[k] + d[k] for k in COLUMNS}


def modelled_cycles(counts: dict) -> int:
    """Cortex-M4 cycle estimate of an interval's class counts (see CYCLES_M4); modelled, not measured."""
    return sum(counts.get(c, 0) * CYCLES_M4[c] for c in CLASSES) + counts.get("lsm_regs", 0)


# --- microbenchmarks: single-operator models timed by the plugin -------------------------------------------------
FIRMWARE_DIR = Path(__file__).resolve().parent
_BOARD_CFLAGS = ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"]  # ports/mps2-an386/board.mk


def microbench_sources(c_dir: Path, names: list[str], arena_bytes: int) -> Path:
    """te_mb_models.c: the table of the linked single-operator models, in measurement order."""
    lines = ['#include "te_model.h"\n'] + [f"extern const te_model_t {n}_model;" for n in names]
    lines.append("const te_model_t *const te_mb_models[] = {" + ", ".join(f"&{n}_model" for n in names) + "};")
    lines.append(f"const uint32_t te_mb_count = {len(names)}u;")
    path = Path(c_dir) / "te_mb_models.c"
    path.write_text("\n".join(lines) + "\n")
    return path


def build_microbench(c_dir: Path, names: list[str], arena_bytes: int, out_dir: Path,
                     kernels: str = "arm_dsp") -> Path:
    """One mps2-an386 image running every model of c_dir once (plugin/microbench_main.c); its ELF."""
    from tinyexit.firmware_bridge.firmware.build import check_toolchain

    check_toolchain()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    table = microbench_sources(c_dir, names, arena_bytes)
    fw = FIRMWARE_DIR
    srcs = [fw / "plugin" / "microbench_main.c", fw / "core" / "te_port_weak.c", fw / "ports" / "mps2-an386" / "port.c",
            fw / "ports" / "cortex-m" / "startup.c", table, *sorted((fw / "kernels" / kernels).glob("*.c")),
            *(Path(c_dir) / f"{n}_model.c" for n in names)]
    flags = [*_BOARD_CFLAGS, "-O2", "-ffunction-sections", "-fdata-sections", "-std=c99", "-Wall", "-Wextra",
             f"-I{fw / 'core'}", f"-I{fw / 'kernels'}", f"-I{fw / 'ports'}", f"-I{fw / 'ports' / 'mps2-an386'}",
             f"-I{c_dir}", f"-DTE_KERNELS_NAME=\"{kernels}\"", f"-DTE_ARENA_BYTES={arena_bytes}"]
    if kernels == "arm_dsp":
        flags.append("-DTE_KERNELS_ARM_DSP=1")
    elf = out_dir / "microbench.elf"
    cmd = ["arm-none-eabi-gcc", *flags, "-nostartfiles", "-specs=nano.specs", "-specs=nosys.specs",
           "-Wl,--gc-sections", f"-T{fw / 'ports' / 'mps2-an386' / 'mps2_an386.ld'}", *map(str, srcs), "-lm",
           "-o", str(elf)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise UserError(f"microbenchmark firmware build failed: {res.stderr.strip()[-2000:]}")
    return elf


def run_microbench(elf: Path, so: Path, out_dir: Path, timeout: float = 300.0) -> tuple[dict, list[dict]]:
    """Run the microbenchmark image under QEMU with the plugin: (empty interval's counts, counts per model)."""
    from tinyexit.firmware_bridge.firmware.profile import MACHINE, QEMU, check_qemu

    check_qemu()
    marks_path = Path(out_dir) / "microbench.marks"
    cmd = [QEMU, "-M", MACHINE, "-display", "none", "-monitor", "none", "-kernel", str(elf),
           "-semihosting-config", "enable=on,target=native", "-icount", "shift=0", "-serial", "stdio",
           *plugin_args(so, elf, marks_path)]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise UserError(f"microbenchmark firmware {elf} did not finish in {timeout:.0f} s") from None
    if res.returncode != 0 or "done" not in res.stdout:
        raise UserError(f"microbenchmark firmware {elf} failed (status {res.returncode}): {res.stderr[-300:]}")
    marks = read_marks(marks_path)[:-1]  # the last line is the final count at exit
    pairs = [difference(marks[i], marks[i + 1]) for i in range(0, len(marks) - 1, 2)]
    return pairs[0], pairs[1:]


# --- the protocol firmware: a RUN's intervals from the marks ----------------------------------------------------
class MarkReader:
    """Reads the plugin's file incrementally; `take()` returns the marks completed since the last take."""

    def __init__(self, path: Path):
        self.path, self.offset, self.partial = Path(path), 0, b""

    def take(self) -> list[dict]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except OSError:
            return []
        self.offset += len(data)
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()
        return [dict(zip(COLUMNS, map(int, line.split()))) for line in lines if line.strip()]


def split_run(marks: list[dict], early_exit: bool, ticks: list[int], decision_ticks: int, repeat: int,
              per_tick: float) -> dict | None:
    """Exact counts of one RUN from the marks up to its RESULT, or None when they cannot be matched.

    Every interval the firmware times is a pair of port_ticks calls (te_run.c: a segment, then, in
    early-exit mode, its exit test), repeated `repeat` times; the RUN's intervals are the last pairs.
    Early exit ends with one more exit test when it left before the last segment, so both layouts
    are tried and the one whose counts agree with the device's own ticks (+-1 tick per interval) kept."""
    executed = len(ticks)
    layouts = [(executed, 0)]
    if early_exit:  # executed - 1 tests between segments, maybe one more that left
        layouts = [(executed, executed - 1), (executed, executed)]
    for n_seg, n_dec in layouts:
        per_rep = n_seg + n_dec
        need = 2 * per_rep * repeat
        if len(marks) < need or need == 0:
            continue
        tail = marks[len(marks) - need:]
        pairs = [difference(tail[i], tail[i + 1]) for i in range(0, need, 2)]
        segs = [None] * n_seg
        dec = None
        for r in range(repeat):
            seq = pairs[r * per_rep:(r + 1) * per_rep]
            order = [("s", j) for j in range(n_seg)] if not n_dec else \
                [x for j in range(n_seg) for x in (("s", j), ("d", j))][:per_rep]
            for (what, j), c in zip(order, seq):
                if what == "s":
                    segs[j] = add(segs[j], c)
                else:
                    dec = add(dec, c)
        slack = per_tick * repeat + 1
        if all(abs(s["total"] - t * per_tick) <= slack for s, t in zip(segs, ticks)) and \
                abs((dec or {"total": 0})["total"] - decision_ticks * per_tick) <= slack * max(n_dec, 1):
            classes = None
            for s in segs:
                classes = add(classes, s)
            return {"instructions": [s["total"] for s in segs],
                    "decision_instructions": (dec or {"total": 0})["total"],
                    "cycles_modelled": [modelled_cycles(s) for s in segs],
                    "instruction_classes": {k: classes[k] for k in CLASSES + ("lsm_regs",)}}
    return None
