"""Stage entry: `build_firmware(run_dir, model, FirmwareConfig) -> report dict` (tinyexit firmware build).

From the bundle RUN/export/<model>/ and its generated C (c/, written by
`tinyexit export --formats c`; never regenerated here: sources.py) to
RUN/firmware/<model>/<board>-<kernels>[-<app>]/fw.elf with arm-none-eabi-gcc
through firmware/Makefile, plus firmware.json: flash (code, weights) and RAM
(arena, input buffer, protocol buffers, stack) beside TensorFlow Lite Micro's
arena for the same segments, and the host-tier bit-exactness check.  Refuses
a model too large for the board with the numbers, and a missing toolchain
with the exact install command.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from tinyexit import __version__
from tinyexit.errors import UserError
from tinyexit.firmware_bridge.firmware.host import FIRMWARE_DIR, KERNEL_SETS, kernel_sources
from tinyexit.firmware_bridge.firmware.sources import check_c_sources, codegen_summary, locate, monolithic_models

APT_INSTALL = "sudo apt-get install -y gcc-arm-none-eabi libnewlib-arm-none-eabi"
APPS = ("firmware", "mlperf", "selftest")


@dataclass(frozen=True)
class Board:
    flash_bytes: int
    ram_bytes: int
    description: str


BOARDS = {
    "mps2-an386": Board(4 << 20, 4 << 20, "Arm MPS2 + AN386, Cortex-M4F (QEMU -M mps2-an386)"),
    "generic-cortex-m4": Board(512 << 10, 128 << 10, "generic Cortex-M4F board, hooks left to the user"),
}


FLASH_MODES = ("speed", "size")
MLPERF_MODELS = ("ic01", "kws01", "vww01", "ad01")


@dataclass(frozen=True)
class FirmwareConfig:
    board: str = "mps2-an386"
    kernels: str = "arm_dsp"
    app: str = "firmware"               # firmware (tinyexit protocol) | mlperf (MLPerf Tiny DUT) | selftest
    input_capacity: int = 4096          # bytes of the LOAD_INPUT buffer (at least one input of each segment)
    monolithic: bool = True             # link the one-subgraph models RUN mode FULL runs
    flash_bytes: int | None = None      # smaller limits than the board's, for a real part
    ram_bytes: int | None = None
    verify: bool = True                 # host-tier bit-exactness against TFLite Micro first
    extra_cflags: str = ""              # e.g. "-DTE_TEST_FAULTS" (tests only)
    # speed: arm_dsp convolutions read weights pre-widened to int16 pairs (codegen_pack; ~2x their flash);
    # size: every kernel reads the plain int8 weights and widens them on the fly (SXTB16)
    flash_mode: str = "speed"
    mlperf_model: str = ""              # --app mlperf: the runner's model id printed as m-model-[<id>]

    def __post_init__(self):
        if self.board not in BOARDS:
            raise UserError(f"--board {self.board}: unknown; choose one of {', '.join(BOARDS)}")
        if self.kernels not in KERNEL_SETS:
            raise UserError(f"--kernels {self.kernels}: unknown; choose one of {', '.join(KERNEL_SETS)}")
        if self.app not in APPS:
            raise UserError(f"--app {self.app}: unknown; choose one of {', '.join(APPS)}")
        if not 64 <= self.input_capacity <= 1 << 20:
            raise UserError(f"input capacity {self.input_capacity}: use 64 .. 1048576 bytes")
        if self.flash_mode not in FLASH_MODES:
            raise UserError(f"--flash-mode {self.flash_mode}: unknown; choose one of {', '.join(FLASH_MODES)}")
        if self.mlperf_model and (self.mlperf_model not in MLPERF_MODELS or self.app != "mlperf"):
            raise UserError(f"--mlperf-model {self.mlperf_model}: needs --app mlperf and one of "
                            f"{', '.join(MLPERF_MODELS)} (the MLPerf Tiny runner's model ids)")
        for key in ("flash_bytes", "ram_bytes"):
            if getattr(self, key) is not None and getattr(self, key) <= 0:
                raise UserError(f"{key} {getattr(self, key)}: must be positive")

    @property
    def limits(self) -> tuple[int, int]:
        b = BOARDS[self.board]
        return self.flash_bytes or b.flash_bytes, self.ram_bytes or b.ram_bytes

    @property
    def dir_name(self) -> str:
        return (f"{self.board}-{self.kernels}" + ("" if self.app == "firmware" else f"-{self.app}")
                + ("-size" if self.flash_mode == "size" else ""))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "FirmwareConfig":
        return cls(**d)


def check_toolchain(cross: str = "arm-none-eabi-") -> None:
    """UserError with the install command when the cross compiler or newlib is missing."""
    if shutil.which(f"{cross}gcc") is None or shutil.which("make") is None:
        raise UserError(f"{cross}gcc (or make) not found; install the toolchain with: {APT_INSTALL} make")
    res = subprocess.run([f"{cross}gcc", "-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16",
                          "-print-file-name=libc_nano.a"], capture_output=True, text=True)
    if not Path(res.stdout.strip()).is_absolute():
        raise UserError(f"newlib for {cross}gcc not found; install it with: {APT_INSTALL}")


def build_firmware(run_dir, model: str = "classifier", cfg: FirmwareConfig = FirmwareConfig(), log=print) -> dict:
    """Build the firmware ELF for `model` of RUN (or of a bundle directory); returns (and writes) firmware.json."""
    from tinyexit.bundle import load_bundle
    from tinyexit.rundir import write_json

    bundle_dir, root = locate(run_dir, model)
    check_toolchain()
    kernel_sources(cfg.kernels)  # refuses an incomplete optimized set before make does
    bundle = load_bundle(bundle_dir, verify=True)  # every listed file present and matching its sha256
    model, manifest = bundle.model, bundle.manifest
    c_dir = check_c_sources(bundle)
    out = root / "firmware" / model / cfg.dir_name
    out.mkdir(parents=True, exist_ok=True)
    segments = codegen_summary(c_dir)
    monos = monolithic_models(bundle, c_dir) if cfg.monolithic and cfg.app == "firmware" else []
    _precheck(segments, monos, cfg, model)
    host = _verify(bundle, cfg, out, log) if cfg.verify else None
    (out / "te_models.c").write_text(models_c(model, manifest, segments, monos, cfg))
    log(f"firmware: building {model} for {cfg.board} with the {cfg.kernels} kernels ({cfg.app}) -> {out}")
    _make(c_dir, out, model, cfg, _app_flags(cfg, bundle.policy))
    report = size_report(out / "fw.elf", model, cfg)
    report.update({"tinyexit_version": __version__, "model": model, "board": cfg.board, "kernels": cfg.kernels,
                   "app": cfg.app, "config": cfg.to_dict(), "elf": str(out / "fw.elf"),
                   "firmware_sources_sha256": firmware_sources_sha256(),
                   "peak_arena_bytes": segments["arena_bytes"], "peak_live_bytes": segments["peak_live_bytes"],
                   "artifact_hash": bundle.artifact_hash})
    report.update(tflm_comparison(bundle, segments["arena_bytes"]))
    if host is not None:
        report["bit_exact_vs_tflm"] = host["bit_exact"]
        report["host_tier"] = host
    write_json(out / "firmware.json", report)
    log(f"firmware: flash {report['flash_bytes']} B (code {report['flash']['code']}, weights "
        f"{report['flash']['weights']}), RAM {report['ram_bytes']} B (arena {report['ram']['arena']}, stack "
        f"{report['ram']['stack']}); TFLM arena {report.get('tflm_arena_bytes')} B")
    return report


def firmware_sources_sha256() -> str:
    """sha256 over the firmware tree (kernels, core, ports, apps, Makefile): a changed tree means a rebuild."""
    import hashlib

    h = hashlib.sha256()
    for path in sorted(p for p in FIRMWARE_DIR.rglob("*") if p.is_file() and "build" not in p.parts):
        h.update(str(path.relative_to(FIRMWARE_DIR)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def ensure_sources(run, model: str) -> Path:
    """RUN/export/<model>/c, checked against the bundle (UserError when missing or stale; never regenerated)."""
    from tinyexit.bundle import load_bundle

    return check_c_sources(load_bundle(locate(run, model)[0]))


def _precheck(segments: dict, monos: list, cfg: FirmwareConfig, model: str) -> None:
    """Refuse before compiling when weights or arena alone exceed the board."""
    flash, ram = cfg.limits
    weights = segments["weight_bytes"] + sum(m["weight_bytes"] for _, m in monos)
    arena = max([segments["arena_bytes"]] + [m["arena_bytes"] for _, m in monos])
    if weights > flash:
        raise UserError(f"{model}: its weights alone need {weights} B of flash, {cfg.board} has {flash} B; "
                        "use a smaller model (or --no-monolithic to drop the full-depth copy)")
    if arena + cfg.input_capacity > ram:
        raise UserError(f"{model}: arena {arena} B + input buffer {cfg.input_capacity} B exceed the {ram} B of RAM "
                        f"of {cfg.board}; use a smaller model or input capacity")


def _verify(bundle, cfg: FirmwareConfig, out: Path, log) -> dict:
    from tinyexit.firmware_bridge.firmware.verify import verify_host_tier

    # Size mode keeps int8 weights (no packed int16 layout): verify the layout that is flashed.
    layout = ("-DTE_ARM_DSP_LAYOUT=0",) if cfg.flash_mode == "size" and cfg.kernels == "arm_dsp" else ()
    res = verify_host_tier(bundle.dir, bundle.model, cfg.kernels, workdir=out, extra_flags=layout)
    bad = [r["index"] for r in res["segments"] if not (r["logits_equal"] and r.get("features_equal", True))]
    log(f"firmware: host tier ({cfg.kernels}) vs TFLite Micro on {res['samples']} inputs ({res['inputs']}): "
        + ("bit-exact on every segment" if not bad else f"MISMATCH in segments {bad}"))
    if bad:
        raise UserError(f"{bundle.model}: generated C differs from TFLite Micro in segments {bad} "
                        f"({out}/firmware.json not written); please report this as a bug")
    return res


def models_c(model: str, manifest: dict, segments: dict, monos: list, cfg: FirmwareConfig) -> str:
    """te_models.c: the firmware's models, shared arena and input buffer."""
    digest = manifest.get("artifact_hash") or "0" * 64
    if not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise UserError(f"manifest artifact_hash '{digest[:16]}...': not a sha256 hex digest; re-run 'tinyexit export'")
    names = [model] + [f"{model}_{s}" for s, _ in monos]
    capacity = max(cfg.input_capacity, max(s["in_bytes"] for s in segments["segments"]))
    arenas = " ".join(f"TE_MAX_ARENA({n.upper()}_ARENA_BYTES," for n in names[1:])
    arena_expr = f"{arenas} {model.upper()}_ARENA_BYTES{')' * (len(names) - 1)}"
    full = {s: f"&{model}_{s}_model" for s, _ in monos}
    hash_bytes = ", ".join(f"0x{digest[i:i + 2]}" for i in range(0, 64, 2))
    sampler, sampler_ref = sampler_c(manifest, segments), "0"
    if sampler:
        sampler_ref = "&te_sampler"
    return ("/* Generated by tinyexit " + __version__ + " (firmware_bridge/firmware/build.py) - do not edit. */\n"
            '#include "te_models.h"\n' + "".join(f'#include "{n}_model.h"\n' for n in names) + sampler
            + "\n#define TE_MAX_ARENA(a, b) ((a) > (b) ? (a) : (b))\n"
            + f"#define TE_ARENA_BYTES ({arena_expr})\n\n"
            + "static int8_t te_arena[TE_ARENA_BYTES] __attribute__((aligned(8)));\n"
            + f"static uint8_t te_input[{capacity}] __attribute__((aligned(8)));\n\n"
            + "const te_firmware_models_t te_models = {\n"
            + f"    &{model}_model, {full.get('full', '0')}, {full.get('all_exits', '0')},\n"
            + "    te_arena, TE_ARENA_BYTES, te_input, sizeof te_input,\n"
            + f"    {{{hash_bytes}}},\n    \"tinyexit-c {cfg.kernels}\",\n    {sampler_ref}\n}};\n")


def _floats(name: str, values) -> str:
    vals = ", ".join(f"{float(v)!r}f" for v in values)
    return f"static const float {name}[{max(len(values), 1)}] = {{{vals or '0.0f'}}};\n"


def sampler_c(manifest: dict, segments: dict) -> str:
    """The denoiser's sampling constants (manifest "denoiser") as a te_sampler_t, or "" for other models."""
    den = manifest.get("denoiser")
    if not den:
        return ""
    T = int(den["T"])
    mix, logits = den["mixing"], den.get("logits") or den["prior_exit"]
    schedule = (den.get("exit_schedule") or {}).get("per_step") or [len(segments["segments"]) - 1] * T
    n_seg = len(segments["segments"])
    if len(schedule) != T or any(not -1 <= int(k) < n_seg for k in schedule):
        raise UserError(f"manifest denoiser exit_schedule {schedule[:8]}...: needs T={T} exits in -1..{n_seg - 1}; "
                        "re-run 'tinyexit export'")
    pixels = len(logits["marginal_logits"])
    if pixels * 2 != segments["segments"][0]["in_bytes"]:
        raise UserError(f"manifest denoiser: {pixels} marginal logits for a {segments['segments'][0]['in_bytes']}-byte "
                        "input (y_t and the timestep plane); re-run 'tinyexit export'")
    inp = manifest["input"]
    return ("\n" + _floats("te_plane", den["timestep_encoding"]["values"]) + _floats("te_a_neg", mix["A_y_neg"])
            + _floats("te_a_pos", mix["A_y_pos"]) + _floats("te_b_neg", mix["B_y_neg"])
            + _floats("te_b_pos", mix["B_y_pos"]) + _floats("te_marginal", logits["marginal_logits"])
            + _floats("te_obs", logits["observation_log_odds"])
            + f"static const int8_t te_schedule[{T}] = {{{', '.join(str(int(k)) for k in schedule)}}};\n"
            + f"static const te_sampler_t te_sampler = {{{T}, {pixels}, te_plane, te_a_neg, te_a_pos, te_b_neg, "
            + f"te_b_pos, te_marginal, te_obs, te_schedule, {int(bool(den.get('prior_residual')))}, "
            + f"{float(inp['scale'])!r}f, {int(inp['zero_point'])}}};\n")


def _app_flags(cfg: FirmwareConfig, policy) -> str:
    """MLPerf mode: the bundle's exit policy is compiled in (one-parameter policies; else full depth)."""
    if cfg.app != "mlperf" or policy is None or len(policy.params) != 1:
        return ""
    return f"-DTE_MLPERF_POLICY_ID={policy.policy_id} -DTE_MLPERF_THRESHOLD={float(policy.params[0])!r}f"


def _make(c_dir: Path, out: Path, model: str, cfg: FirmwareConfig, app_flags: str = "") -> None:
    cmd = ["make", "-s", "-C", str(FIRMWARE_DIR), f"BOARD={cfg.board}", f"KERNELS={cfg.kernels}", f"APP={cfg.app}",
           f"MODEL={model}", f"MODEL_DIR={c_dir}", f"MODELS_C={out / 'te_models.c'}", f"BUILD={out}"]
    if not cfg.monolithic:
        cmd.append("MONO_SRCS=")
    cmd.append(f"FLASH_MODE={cfg.flash_mode}")
    if cfg.mlperf_model:
        cmd.append(f"MLPERF_MODEL={cfg.mlperf_model}")
    flags = " ".join(f for f in (cfg.extra_cflags, app_flags) if f)
    if flags:
        cmd.append(f"EXTRA_CFLAGS={flags}")
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode == 0:
        return
    over = re.findall(r"region `(\w+)' overflowed by (\d+) bytes", res.stderr)
    if over:
        flash, ram = BOARDS[cfg.board].flash_bytes, BOARDS[cfg.board].ram_bytes
        parts = [f"{region} needs {(flash if region == 'FLASH' else ram) + int(n)} B, the board has "
                 f"{flash if region == 'FLASH' else ram} B" for region, n in over]
        raise UserError(f"{model} does not fit {cfg.board}: {'; '.join(parts)}; use a smaller model")
    raise UserError(f"firmware build failed ({' '.join(cmd[:3])} ...):\n{res.stderr.strip()[-3000:]}")


_WEIGHT_SYM = re.compile(r"_L\d+_(w|bias|mult|shift|lut|lut1|lut2)$")


def size_report(elf: Path, model: str, cfg: FirmwareConfig) -> dict:
    """Flash and RAM of the ELF by section, with weights, arena, buffers and stack broken out."""
    cross = "arm-none-eabi-"
    sections = {}
    for line in subprocess.run([f"{cross}size", "-A", str(elf)], capture_output=True, text=True,
                               check=True).stdout.splitlines()[2:]:
        parts = line.split()
        if len(parts) >= 3 and parts[1].isdigit():
            sections[parts[0]] = int(parts[1])
    symbols = {}
    for line in subprocess.run([f"{cross}nm", "-S", "--size-sort", str(elf)], capture_output=True, text=True,
                               check=True).stdout.splitlines():
        parts = line.split()
        if len(parts) == 4:
            symbols[parts[3]] = symbols.get(parts[3], 0) + int(parts[1], 16)
    weights = sum(v for k, v in symbols.items() if k.startswith(model) and _WEIGHT_SYM.search(k))
    flash = sections.get(".text", 0) + sections.get(".ARM.exidx", 0) + sections.get(".data", 0)
    ram_sections = sum(sections.get(s, 0) for s in (".data", ".bss", ".noinit", ".stack"))
    arena, inp = symbols.get("te_arena", 0), symbols.get("te_input", 0)
    protocol = symbols.get("device", 0) + symbols.get("decoder", 0)
    stack = sections.get(".stack", 0)
    f_lim, r_lim = cfg.limits
    report = {"flash_bytes": flash, "ram_bytes": ram_sections, "sections": sections,
              "flash": {"code": flash - weights, "weights": weights},
              "ram": {"arena": arena, "input_buffer": inp, "protocol_buffers": protocol, "stack": stack,
                      "other": ram_sections - arena - inp - protocol - stack},
              "limits": {"flash_bytes": f_lim, "ram_bytes": r_lim}}
    if flash > f_lim or ram_sections > r_lim:
        raise UserError(f"{model} firmware needs {flash} B flash and {ram_sections} B RAM; the limits are {f_lim} B "
                        f"and {r_lim} B ({cfg.board}); use a smaller model or raise --flash-kib/--ram-kib")
    return report


def tflm_comparison(bundle, peak_arena: int) -> dict:
    """TFLite Micro's recorded arena per segment file, beside this firmware's arena."""
    from tinyexit.firmware_bridge.firmware.verify import tflm_arena_bytes

    per = [tflm_arena_bytes(bundle.file(s.files.get("tflm"), f"TFLite Micro file of segment {s.index}",
                                        verify=False).read_bytes()) for s in bundle.segments]
    total = max(p["total"] for p in per)
    head = max(p.get("head", 0) for p in per)
    return {"tflm_arena_bytes": total, "tflm_arena": {"per_segment": per, "max_total": total, "max_head": head,
                                                     "sum_total": sum(p["total"] for p in per),
                                                     "measured_on": "tflite-micro Python interpreter (64-bit host)"},
            "arena_vs_tflm": round(peak_arena / total, 4) if total else None}
