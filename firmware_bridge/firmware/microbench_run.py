"""Stage entry of `tinyexit profile-device --target qemu`: the sweep's C models measured on the firmware.

`measure_microbench(c_dir, rows, work, kernels)` builds one microbenchmark image of every
model in c_dir (plugin/microbench_main.c, the firmware's own kernels and port), runs it
under QEMU with the te_count plugin and returns the exact instruction counts (and the
modelled Cortex-M4 cycles) of the empty interval and of each model, plus the identity of
what was measured (firmware sources' and plugin's sha256).
"""
from __future__ import annotations

import hashlib
from pathlib import Path


def firmware_identity(kernels: str) -> dict:
    from tinyexit.firmware_bridge.firmware import plugin as fp
    from tinyexit.firmware_bridge.firmware.build import firmware_sources_sha256

    return {"firmware_sources_sha256": firmware_sources_sha256(), "kernels": kernels,
            "plugin_sha256": hashlib.sha256(fp.SOURCE.read_bytes()).hexdigest()}


def measure_microbench(c_dir: Path, rows: list[dict], work: Path, kernels: str = "arm_dsp") -> tuple[dict, list[dict]]:
    """(empty interval, rows with instructions / cycles_modelled / classes); timing in rows' order."""
    from tinyexit.firmware_bridge.firmware import plugin as fp

    elf = fp.build_microbench(Path(c_dir), [r["name"] for r in rows], max(r["arena_bytes"] for r in rows),
                              Path(work), kernels)
    so = fp.build_plugin(Path(work))
    empty, counts = fp.run_microbench(elf, so, Path(work))
    out = [r | {"instructions": c["total"], "cycles_modelled": fp.modelled_cycles(c), "classes": c}
           for r, c in zip(rows, counts)]
    return {"instructions": empty["total"], "cycles_modelled": fp.modelled_cycles(empty), "classes": empty}, out


def cycles_note() -> str:
    from tinyexit.firmware_bridge.firmware import plugin as fp

    return fp.CYCLES_NOTE
