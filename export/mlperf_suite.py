"""`tinyexit bench-suite mlperf-tiny --out DIR`: the four MLPerf Tiny architectures on the emulated Cortex-M4.

For each model (export/mlperf_models.py, or your own files with --files id=PATH): write the seeded int8
file, `tinyexit import` it into DIR, then — as separate `tinyexit` processes, since the firmware stages
live downstream of export — `firmware build` (host tier bit-exact against TFLite Micro first) and
`firmware profile` (instructions per layer under QEMU -icount shift=0), in the speed and the size flash
mode.  The table (DIR/mlperf_tiny.md, .json) puts the measurements beside the issue's targets.

TFLite Micro's arena is what its Python interpreter records on this 64-bit host: `total` over-counts
the persistent structures a 32-bit Cortex-M would hold, `head` (the tensor arena proper) is a lower
bound of what TFLite Micro needs there; the table gives our arena against both.
"""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tinyexit.errors import UserError

TARGET_IPM = {"ic01": 0.85, "kws01": 1.0, "vww01": 1.1, "ad01": 1.2}   # instructions per MAC, arm_dsp
TARGET_ARENA_RATIO = 0.8
TARGET_SIZE_FLASH_RATIO = 1.05


@dataclass(frozen=True)
class SuiteConfig:
    models: tuple[str, ...] = ("ic01", "kws01", "vww01", "ad01")
    files: dict = field(default_factory=dict)   # model id -> your own .tflite (else the seeded rebuild)
    kernels: str = "arm_dsp"
    flash_modes: tuple[str, ...] = ("speed", "size")
    seed: int = 0

    def __post_init__(self):
        from tinyexit.export.mlperf_models import MODELS
        bad = [m for m in self.models if m not in MODELS]
        if bad:
            raise UserError(f"--models {','.join(bad)}: unknown; choose from {', '.join(MODELS)}")

    def to_dict(self) -> dict:
        return asdict(self)


def run_suite(out_dir: str | Path, cfg: SuiteConfig = SuiteConfig(), progress=print) -> dict:
    from tinyexit.export import mlperf_models as mm
    from tinyexit.export.import_tflite import ImportConfig, import_tflite
    from tinyexit.rundir import write_json

    out = Path(out_dir).resolve()
    rows = []
    for mid in cfg.models:
        if mid in cfg.files:
            path, npz = Path(cfg.files[mid]), None
        else:
            progress(f"bench-suite: {mid}: building {mm.MODELS[mid].title} (seeded weights, int8 PTQ)")
            path, npz = mm.write_model(mid, out / "models", cfg.seed)
        import_tflite([path], out, ImportConfig(name=mid, inputs=str(npz) if npz else None), progress)
        row = {"model": mid, "title": mm.MODELS[mid].title, "file": str(path), "modes": {}}
        for mode in cfg.flash_modes:
            # every mode verified: the host tier builds the layout that mode flashes (size: int8 weights)
            _tinyexit(["firmware", "build", str(out), "--model", mid, "--kernels", cfg.kernels,
                       "--flash-mode", mode], progress)
            _tinyexit(["firmware", "profile", str(out), "--model", mid, "--kernels", cfg.kernels,
                              "--flash-mode", mode], progress)
            row["modes"][mode] = _measure(out, mid, cfg.kernels, mode)
        rows.append(_summarise(out, mid, row))
    result = {"config": cfg.to_dict(), "unit": "instructions (QEMU mps2-an386, -icount shift=0)", "rows": rows}
    write_json(out / "mlperf_tiny.json", result)
    (out / "mlperf_tiny.md").write_text(render(result))
    progress(f"bench-suite: table -> {out / 'mlperf_tiny.md'}")
    return result


def _tinyexit(args: list[str], progress) -> str:
    exe = Path(sys.executable).parent / "tinyexit"
    res = subprocess.run([str(exe), *args], capture_output=True, text=True)
    if res.returncode != 0:
        raise UserError(f"bench-suite: 'tinyexit {' '.join(args[:2])} ... {args[4] if len(args) > 4 else ''}' "
                        f"failed: {(res.stderr.strip().splitlines() or ['?'])[-1]}")
    progress((res.stdout.strip().splitlines() or [""])[-1])
    return res.stdout


def _measure(run: Path, mid: str, kernels: str, mode: str) -> dict:
    d = run / "firmware" / mid / (f"mps2-an386-{kernels}" + ("-size" if mode == "size" else ""))
    fw = json.loads((d / "firmware.json").read_text())
    prof = json.loads((d / "profile.json").read_text())
    conv_w = _weight_array_bytes(Path(fw["elf"]), mid)
    return {"instructions": prof["instructions"], "macs": prof["macs"],
            "instructions_per_mac": round(prof["instructions_per_mac"], 4), "per_layer": prof["per_layer"],
            "flash_bytes": fw["flash_bytes"], "weights_flash_bytes": fw["flash"]["weights"],
            "weight_arrays_bytes": conv_w, "ram_bytes": fw["ram_bytes"], "arena_bytes": fw["peak_arena_bytes"],
            "tflm_arena_total": fw["tflm_arena"]["max_total"], "tflm_arena_head": fw["tflm_arena"]["max_head"],
            "bit_exact_vs_tflm": fw.get("bit_exact_vs_tflm"),
            "host_tier_samples": (fw.get("host_tier") or {}).get("samples"),
            "stack_used_bytes": prof.get("stack_used_bytes")}


def _weight_array_bytes(elf: Path, mid: str) -> int:
    """Bytes of the weight arrays alone (<model>_L<i>_w), as linked."""
    nm = subprocess.run(["arm-none-eabi-nm", "-S", str(elf)], capture_output=True, text=True, check=True).stdout
    total = 0
    for line in nm.splitlines():
        p = line.split()
        if len(p) == 4 and p[3].startswith(f"{mid}_L") and p[3].endswith("_w"):
            total += int(p[1], 16)
    return total


def _summarise(run: Path, mid: str, row: dict) -> dict:
    man = json.loads((run / "export" / mid / "manifest.json").read_text())
    seg = man["segments"][0]
    row["macs"] = man["full_macs"]
    row["int8_weight_bytes"] = sum(int(op.get("param_bytes", 0)) for op in seg["ops"]
                                   if op["type"] in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"))
    row["int8_weights_only"] = _int8_weights(run / "export" / mid / seg["files"]["tflm"]["path"])
    speed = row["modes"].get("speed") or next(iter(row["modes"].values()))
    row["target_instructions_per_mac"] = TARGET_IPM[mid]
    row["meets_ipm"] = speed["instructions_per_mac"] <= TARGET_IPM[mid]
    row["arena_vs_tflm_total"] = round(speed["arena_bytes"] / speed["tflm_arena_total"], 3)
    row["arena_vs_tflm_head"] = round(speed["arena_bytes"] / max(1, speed["tflm_arena_head"]), 3)
    if "size" in row["modes"]:
        row["size_weights_ratio"] = round(row["modes"]["size"]["weight_arrays_bytes"] / row["int8_weights_only"], 4)
    return row


def _int8_weights(path: Path) -> int:
    from tinyexit.export import tflite_graph as tg

    g = tg.read_model(path.read_bytes())[0]
    return sum(g.tensors[op.inputs[1]].nbytes for op in g.ops
               if op.type in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"))


def render(result: dict) -> str:
    lines = ["# MLPerf Tiny architectures on QEMU mps2-an386 (Cortex-M4F), generated C", "",
             "Instructions under `qemu-system-arm -icount shift=0` (not cycles of a real chip); seeded stand-ins "
             "of the reference architectures unless a file was given.  TFLM arena: its Python interpreter on a "
             "64-bit host (`total`, over-counts persistent data) and its tensor arena proper (`head`).  Bit-exact: "
             "the generated C of each flash mode's weight layout against TFLite Micro on the host tier.", "",
             "| model | MACs | instructions | instr/MAC (target) | arena B | TFLM total / head B | arena/TFLM total "
             "(head) | RAM B | flash B | bit-exact | size mode: instr/MAC, flash B, weights / int8 weights, bit-exact |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        s = r["modes"].get("speed") or next(iter(r["modes"].values()))
        z = r["modes"].get("size")
        size = (f"{z['instructions_per_mac']:.3f}, {z['flash_bytes']:,}, {r['size_weights_ratio']:.3f}x, "
                f"{z['bit_exact_vs_tflm']} ({z['host_tier_samples']} inputs)" if z else "–")
        lines.append(f"| {r['model']} {r['title']} | {r['macs']:,} | {s['instructions']:,} | "
                     f"{s['instructions_per_mac']:.3f} ({r['target_instructions_per_mac']}, "
                     f"{'met' if r['meets_ipm'] else 'missed'}) | {s['arena_bytes']:,} | "
                     f"{s['tflm_arena_total']:,} / {s['tflm_arena_head']:,} | {r['arena_vs_tflm_total']} "
                     f"({r['arena_vs_tflm_head']}) | {s['ram_bytes']:,} | {s['flash_bytes']:,} | "
                     f"{s['bit_exact_vs_tflm']} ({s['host_tier_samples']} inputs) | {size} |")
    for r in result["rows"]:
        s = r["modes"].get("speed") or next(iter(r["modes"].values()))
        lines += ["", f"## {r['model']}: per layer (speed mode)", "", "| layer | MACs | instructions | instr/MAC |",
                  "|---|---|---|---|"]
        for layer in s["per_layer"]:
            ipm = f"{layer['instructions_per_mac']:.2f}" if layer.get("instructions_per_mac") else "–"
            lines.append(f"| {layer['name']} | {layer['macs']:,} | {layer['instructions']:,} | {ipm} |")
    return "\n".join(lines) + "\n"
