"""Report section "firmware": size of the bare-metal firmware vs TensorFlow Lite Micro's arena.

Reads RUN/firmware/<model>/<board>-<kernels>/firmware.json written by
`tinyexit firmware build` (and by the QEMU target).  Sizes are measured from
the linked ELF; TFLite Micro's arena is measured by its Python interpreter.
"""
from __future__ import annotations

from pathlib import Path

from tinyexit.eval.plots import md_table
from tinyexit.eval.report import Section
from tinyexit.rundir import read_json

ORDER = 35
KEYS = ("board", "kernels", "flash_bytes", "ram_bytes", "peak_arena_bytes", "tflm_arena_bytes", "bit_exact_vs_tflm")


def _builds(run_dir: Path) -> list[dict]:
    """Benchmark firmware builds (not the per-layer selftest builds), one per model/board/kernel set."""
    out = []
    for path in sorted(run_dir.glob("firmware/*/*/firmware.json")):
        fw = read_json(path)
        if fw.get("app", "firmware") != "firmware":
            continue
        out.append({"model": fw.get("model", path.parent.parent.name), **{k: fw.get(k) for k in KEYS},
                    "flash": fw.get("flash", {}), "ram": fw.get("ram", {}),
                    "arena_vs_tflm": fw.get("arena_vs_tflm"),
                    "tflm_arena_sum_of_segments": (fw.get("tflm_arena") or {}).get("sum_total"),
                    "path": str(path.relative_to(run_dir))})
    return out


def build(run_dir: Path, report_dir: Path) -> Section | None:
    builds = _builds(run_dir)
    if not builds:
        return None
    main = next((b for b in builds if b["model"] == "classifier"), builds[0])
    data = {**{k: main[k] for k in KEYS}, "model": main["model"], "builds": builds}
    rows = [[b["model"], f"{b['board']} / {b['kernels']}", f"{b['flash_bytes']:,}",
             f"{b['flash'].get('weights', 0):,}", f"{b['ram_bytes']:,}", f"{b['peak_arena_bytes']:,}",
             f"{b['tflm_arena_bytes']:,}", b["arena_vs_tflm"], b["bit_exact_vs_tflm"]] for b in builds]
    md = ["## Firmware (sizes measured from the linked ELF)", "",
          md_table(["model", "board / kernels", "flash (B)", "of which weights (B)", "RAM (B)",
                    "peak arena (B)", "TFLite Micro arena (B)", "arena / TFLM", "bit-exact vs TFLM"], rows), "",
          "RAM counts the tensor arena, the input buffer, the protocol buffers and the stack; the TFLite Micro "
          "arena is that of the largest segment, measured by the tflite-micro Python interpreter (a 64-bit host, "
          "so its fixed overhead is larger than on a Cortex-M). Bit-exactness is checked on every test sample "
          "and every segment against TFLite Micro."]
    return Section("firmware", data, "\n".join(md))
