"""The host tier: generated C + one kernel set compiled with the host compiler, driven over stdin/stdout.

Same code as the firmware (kernels, generated model), no port and no protocol,
so every segment can be checked byte for byte against TensorFlow Lite Micro
quickly on the whole test split.  See firmware/tools/host_runner.c for the
byte format.
"""
from __future__ import annotations

import json
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np

from tinyexit.errors import UserError

FIRMWARE_DIR = Path(__file__).resolve().parent
KERNEL_SETS = ("reference", "arm_dsp")


def kernel_sources(kernels: str) -> list[Path]:
    """The .c files of one kernel set; the optimized set must provide every reference file."""
    if kernels not in KERNEL_SETS:
        raise UserError(f"kernel set '{kernels}': unknown; choose one of {', '.join(KERNEL_SETS)}")
    ref = sorted(p.name for p in (FIRMWARE_DIR / "kernels" / "reference").glob("*.c"))
    have = sorted(p.name for p in (FIRMWARE_DIR / "kernels" / kernels).glob("*.c"))
    missing = sorted(set(ref) - set(have))
    if missing:
        raise UserError(f"kernel set '{kernels}' lacks {', '.join(missing)}; refusing to fall back to the reference")
    return [FIRMWARE_DIR / "kernels" / kernels / n for n in have]


def build_host_runner(c_dir: str | Path, model_name: str, out: str | Path, kernels: str = "reference",
                      cc: str = "gcc", extra_flags: tuple[str, ...] = ()) -> Path:
    """Compile host_runner.c + <model>_model.c + the kernel set into `out` (an executable)."""
    if shutil.which(cc) is None:
        raise UserError(f"host C compiler '{cc}' not found; install it with: sudo apt-get install -y gcc")
    if kernels == "arm_dsp" and "-DTE_EMULATE_DSP" not in extra_flags:
        raise UserError("the arm_dsp kernels need a Cortex-M with the DSP extension; "
                        "on the host pass extra_flags=('-DTE_EMULATE_DSP',) to use the C emulation of its intrinsics")
    c_dir = Path(c_dir)
    srcs = [FIRMWARE_DIR / "tools" / "host_runner.c", c_dir / f"{model_name}_model.c", *kernel_sources(kernels)]
    cmd = [cc, "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-fwrapv",
           f"-I{FIRMWARE_DIR / 'core'}", f"-I{FIRMWARE_DIR / 'kernels'}", f"-I{c_dir}",
           f"-DTE_MODEL={model_name}_model", *extra_flags, *map(str, srcs), "-o", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise UserError(f"host build of {c_dir} failed:\n{res.stderr.strip()[:4000]}")
    return Path(out).resolve()


def _cc(cmd: list[str], what: str) -> None:
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise UserError(f"host build of {what} failed:\n{res.stderr.strip()[:4000]}")


def build_frame_dump(out: str | Path, cc: str = "gcc") -> Path:
    """tools/frame_dump.c: the C frame decoder as a stdin -> event-lines filter."""
    core = FIRMWARE_DIR / "core"
    _cc([cc, "-std=c99", "-O1", "-Wall", "-Wextra", "-Werror", "-fsanitize=address,undefined",
         f"-I{core}", str(FIRMWARE_DIR / "tools" / "frame_dump.c"), str(core / "te_frame.c"),
         str(core / "te_status.c"), "-o", str(out)], "frame_dump")
    return Path(out).resolve()


def build_host_firmware(c_dir: str | Path, model: str, models_c: str | Path, out: str | Path,
                        kernels: str = "reference", cc: str = "gcc", sanitize: bool = True) -> Path:
    """The whole firmware (core + protocol + models) on the host port: stdin/stdout is the UART."""
    core = FIRMWARE_DIR / "core"
    c_dir = Path(c_dir)
    extra = ["-DTE_EMULATE_DSP"] if kernels == "arm_dsp" else []
    mono = [p for p in (c_dir / f"{model}_full_model.c", c_dir / f"{model}_all_exits_model.c") if p.is_file()]
    srcs = [*sorted(core.glob("*.c")), FIRMWARE_DIR / "ports" / "host" / "port.c", Path(models_c),
            c_dir / f"{model}_model.c", *mono, *kernel_sources(kernels)]
    flags = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all"] if sanitize else []
    _cc([cc, "-std=c99", "-O1", "-g", "-Wall", "-Wextra", "-Werror", *flags, *extra, f"-I{core}",
         f"-I{FIRMWARE_DIR / 'kernels'}", f"-I{FIRMWARE_DIR / 'ports'}", f"-I{c_dir}", *map(str, srcs), "-lm",
         "-o", str(out)], "the host firmware")
    return Path(out).resolve()


class HostRunner:
    """Drive a built host runner; `segments` is the `segments` list of the codegen summary."""

    def __init__(self, exe: str | Path, segments: list[dict]):
        self.exe = Path(exe)
        self.segments = segments

    @classmethod
    def from_c_dir(cls, exe: str | Path, c_dir: str | Path) -> "HostRunner":
        return cls(exe, json.loads((Path(c_dir) / "codegen.json").read_text())["segments"])

    def _call(self, seg: int, inputs: np.ndarray, chain: bool) -> bytes:
        s = self.segments[0 if chain else seg]
        x = np.ascontiguousarray(np.asarray(inputs, np.int8).reshape(len(inputs), s["in_bytes"]))
        req = b"TER1" + struct.pack("<III", seg, len(x), int(chain)) + x.tobytes()
        res = subprocess.run([str(self.exe)], input=req, capture_output=True, timeout=600)
        if res.returncode != 0:
            raise UserError(f"{self.exe}: exit status {res.returncode}: {res.stderr.decode(errors='replace')[:400]}")
        return res.stdout

    def run_segment(self, seg: int, inputs) -> tuple[np.ndarray, np.ndarray | None]:
        """Segment `seg` on its own inputs (N x input bytes) -> (logits N x C, features N x F or None)."""
        s = self.segments[seg]
        n = len(inputs)
        per = s["num_classes"] + s["feat_bytes"]
        out = np.frombuffer(self._call(seg, inputs, False), np.int8)
        if out.size != n * per:
            raise UserError(f"{self.exe}: returned {out.size} bytes for {n} inputs, expected {n * per}")
        out = out.reshape(n, per)
        feats = out[:, s["num_classes"]:] if s["feat_bytes"] else None
        return out[:, :s["num_classes"]].copy(), None if feats is None else feats.copy()

    def run_chain(self, last: int, inputs) -> list[np.ndarray]:
        """Segments 0..last chained in the arena from model inputs -> logits of each (N x C)."""
        n = len(inputs)
        sizes = [self.segments[k]["num_classes"] for k in range(last + 1)]
        out = np.frombuffer(self._call(last, inputs, True), np.int8)
        if out.size != n * sum(sizes):
            raise UserError(f"{self.exe}: returned {out.size} bytes, expected {n * sum(sizes)}")
        out = out.reshape(n, sum(sizes))
        return [out[:, sum(sizes[:k]):sum(sizes[:k + 1])].copy() for k in range(last + 1)]
