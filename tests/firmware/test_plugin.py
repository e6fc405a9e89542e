"""The te_count QEMU plugin: exact instruction counts, per class, between two marker calls.

plugin_loop/loop.S runs a 9-instruction loop body (one instruction of each class) 1000 times
between two calls of `mark`; the plugin's counts must be exactly what the listing says.
"""
import shutil
import subprocess
from pathlib import Path

import pytest

from tinyexit.firmware_bridge.firmware import plugin as P

pytestmark = [pytest.mark.qemu, pytest.mark.skipif(
    shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None
    or shutil.which("gcc") is None, reason="needs qemu-system-arm, gcc-arm-none-eabi and gcc")]

LOOP = Path(__file__).parent / "plugin_loop" / "loop.S"


def _run_loop(tmp: Path) -> list[dict]:
    tmp.mkdir(parents=True, exist_ok=True)
    elf = tmp / "loop.elf"
    subprocess.run(["arm-none-eabi-gcc", "-mcpu=cortex-m4", "-mthumb", "-nostdlib", "-nostartfiles",
                    "-Wl,-Ttext=0x0", "-o", str(elf), str(LOOP)], check=True)
    so = P.build_plugin(tmp / "plugin")
    out = tmp / "marks.txt"
    cmd = ["qemu-system-arm", "-M", "mps2-an386", "-display", "none", "-monitor", "none", "-kernel", str(elf),
           "-semihosting-config", "enable=on,target=native", "-icount", "shift=0", "-serial", "null",
           *P.plugin_args(so, elf, out, "mark")]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    return P.read_marks(out)


def test_known_loop_counts_exactly(tmp_path):
    marks = _run_loop(tmp_path)
    assert len(marks) == 3  # two calls of mark, then the final counts at exit
    d = P.difference(marks[0], marks[1])
    # bx lr + mov.w r0 + 1000 x (smlad, ldr.w, str.w, push, pop, udiv, nop, subs, bne) + bl mark
    assert d == {"total": 2 + 1000 * 9 + 1, "load": 2000, "store": 2000, "mac": 1000, "branch": 1000,
                 "jump": 2, "div": 1000, "other": 1 + 2000, "lsm_regs": 4000}
    # after the second mark: bx lr, movs, ldr (literal), bkpt (the exit itself)
    assert P.difference(marks[1], marks[2])["total"] == 4


def test_counts_identical_on_two_runs(tmp_path):
    a = _run_loop(tmp_path / "a")
    b = _run_loop(tmp_path / "b")
    assert a == b


def test_modelled_cycles_follow_the_published_table():
    counts = {"total": 9003, "load": 2000, "store": 2000, "mac": 1000, "branch": 1000, "jump": 2, "div": 1000,
              "other": 2001, "lsm_regs": 4000}
    assert P.modelled_cycles(counts) == 2000 * 2 + 2000 * 2 + 1000 + 1000 * 2 + 2 * 3 + 1000 * 7 + 2001 + 4000


def test_read_marks_ignores_a_half_written_line(tmp_path):
    f = tmp_path / "m.txt"
    f.write_text("5 1 1 1 1 0 0 1 0\n9 2 1")
    assert P.read_marks(f) == [dict(zip(P.COLUMNS, [5, 1, 1, 1, 1, 0, 0, 1, 0]))]


def _marks(deltas, start=7):
    """Running-count lines whose consecutive differences are `deltas` (each one class 'other')."""
    out, total = [], start
    for d in [0] + list(deltas):
        total += d
        out.append({c: 0 for c in P.COLUMNS} | {"total": total, "other": total})
    return out


def test_split_run_early_exit_finds_the_trailing_exit_test():
    # boot call, warm-up pair, then RUN: seg0 (pair), test, seg1, test that left -> 4 pairs = 8 marks
    gaps = [100, 500, 9, 221107, 31, 1067, 12, 176205, 40, 1060]
    marks = _marks(gaps)
    # pairs are (mark 2i, 2i+1) of the RUN's tail: seg0 = 221107, dec0 = 1067, seg1 = 176205, dec1 = 1060
    tail = marks[-8:]
    assert [tail[i + 1]["total"] - tail[i]["total"] for i in range(0, 8, 2)] == [221107, 1067, 176205, 1060]
    res = P.split_run(marks, True, [221107 // 40, 176205 // 40], (1067 + 1060) // 40, 1, 40.0)
    assert res["instructions"] == [221107, 176205] and res["decision_instructions"] == 2127


def test_split_run_refuses_counts_that_disagree_with_the_ticks():
    marks = _marks([5, 1000, 3, 2000])
    assert P.split_run(marks, False, [25], 0, 1, 40.0) is None           # 2000 instructions != 25 ticks
    assert P.split_run(marks, False, [50], 0, 1, 40.0)["instructions"] == [2000]


def test_split_generation_follows_the_schedule():
    from tinyexit.firmware_bridge.harness.sampler import split_generation

    # T = 3, exits at steps t=3,2,1 -> per_step[t-1]: [-1, 0, 1]: t=3 net+math, t=2 net+math, t=1 math only
    gaps = [0, 900, 5, 50, 5, 400, 5, 50, 5, 50]
    marks = _marks(gaps)[-10:]
    assert split_generation(marks, [-1, 0, 1]) == {"network_instructions": 1300, "sampling_instructions": 150}
