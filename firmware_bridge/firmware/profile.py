"""Instructions per layer under QEMU: the selftest firmware on `qemu-system-arm -M mps2-an386 -icount shift=0`.

`profile_layers(run_dir, model, kernels)` (`tinyexit firmware profile`) builds the
selftest app, runs it to completion and writes profile.json beside the firmware:
instructions per layer, per segment and per MAC.  With `-icount shift=0` one
guest instruction is 1 ns of virtual time, so the counts are identical on every run.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tinyexit.errors import UserError

QEMU = "qemu-system-arm"
MACHINE = "mps2-an386"
TICK_HZ = 25_000_000
INSTRUCTIONS_PER_TICK = 1_000_000_000 // TICK_HZ  # -icount shift=0: 1 ns per instruction


def check_qemu() -> None:
    if shutil.which(QEMU) is None:
        raise UserError(f"{QEMU} not found; install it with: sudo apt-get install -y qemu-system-arm")


def run_selftest(elf: Path, timeout: float = 120.0) -> str:
    """Run the selftest firmware to completion; its UART text."""
    check_qemu()
    cmd = [QEMU, "-M", MACHINE, "-display", "none", "-monitor", "none", "-kernel", str(elf),
           "-semihosting-config", "enable=on,target=native", "-icount", "shift=0", "-serial", "stdio"]
    try:
        res = subprocess.run(cmd, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise UserError(f"selftest firmware {elf} did not finish in {timeout:.0f} s") from None
    if res.returncode != 0:
        raise UserError(f"selftest firmware {elf} exited with status {res.returncode}: "
                        f"{res.stderr.decode(errors='replace')[-300:]}")
    return res.stdout.decode(errors="replace")


def parse_selftest(text: str) -> dict:
    """Per-segment and per-layer ticks (summed over the selftest's repeats) -> instructions per inference."""
    head = next((line.split() for line in text.splitlines() if line.startswith("model ")), None)
    if head is None or "done" not in text:
        raise UserError(f"selftest output incomplete: {text[-200:]!r}")
    reps = int(head[head.index("repeats") + 1])
    hz = int(head[head.index("tick_hz") + 1])
    per_tick = 1e9 / hz
    segs, layers = [], []
    for line in text.splitlines():
        p = line.split()
        if p and p[0] in ("segment", "layer"):
            ticks, macs = int(p[3]), int(p[5])
            row = {"name": p[1], "instructions": round(ticks * per_tick / reps), "macs": macs}
            row["instructions_per_mac"] = row["instructions"] / macs if macs else None
            (segs if p[0] == "segment" else layers).append(row)
    total = sum(s["instructions"] for s in segs)
    macs = sum(s["macs"] for s in segs)
    stack = next((int(line.split()[1]) for line in text.splitlines() if line.startswith("stack_used ")), None)
    return {"segments": segs, "per_layer": layers, "instructions": total, "macs": macs, "stack_used_bytes": stack,
            "instructions_per_mac": total / macs, "tick_hz": hz, "instructions_per_tick": per_tick,
            "repeats": reps}


def profile_layers(run_dir, model: str = "classifier", kernels: str = "arm_dsp", log=print,
                   flash_mode: str = "speed") -> dict:
    """Build the selftest firmware, run it under QEMU, write profile.json beside the firmware."""
    from tinyexit.firmware_bridge.firmware.build import FirmwareConfig, build_firmware, locate
    from tinyexit.rundir import write_json

    _, root = locate(run_dir, model)
    cfg = FirmwareConfig(board=MACHINE, kernels=kernels, app="selftest", verify=False, monolithic=False,
                         flash_mode=flash_mode)
    report = build_firmware(run_dir, model, cfg, log=log)
    model = report["model"]  # a bundle directory names its own model
    res = parse_selftest(run_selftest(Path(report["elf"])))
    res.update({"model": model, "kernels": kernels, "board": MACHINE, "unit": "instructions", "flash_mode": flash_mode,
                "artifact_hash": report.get("artifact_hash", ""),
                "firmware_sources_sha256": report.get("firmware_sources_sha256", ""),
                "note": "QEMU -icount shift=0: instructions, not cycles of a real chip"})
    path = root / "firmware" / model / (f"{MACHINE}-{kernels}" + ("-size" if flash_mode == "size" else "")) / "profile.json"
    write_json(path, res)
    res["path"] = str(path)
    return res
