"""Fuzzing the firmware's C code that parses host bytes: `fuzz_c(run_dir, workdir, FuzzCConfig) -> dict`.

Two libFuzzer targets in firmware/fuzz/, compiled with clang, AddressSanitizer and
UndefinedBehaviorSanitizer (any report aborts), one process on one core:
  protocol  fuzz_protocol.c: arbitrary bytes through the firmware's receiver (COBS and
            FEC) and request handler (core/) with the run's classifier and denoiser linked in,
            so LOAD_INPUT, RUN in every mode and GENERATE execute the real kernels;
            every decoder event and reply is checked against fuzz_oracle.c, an
            independent reading of docs/protocol.md.  Seeds: the recorded
            transcripts (tests/firmware_bridge/transcripts) and sessions built with
            the Python framing layer (reliability_c_seeds.py).
  mlperf    fuzz_mlperf.c: the MLPerf Tiny DUT command parser (apps/mlperf_main.c).

    tinyexit reliability fuzz-c [RUN_DIR] --seconds 600 [--target protocol_stub|mlperf]

  protocol_stub  fuzz_protocol.c against stub kernels (fuzz/te_kernels_stub.c): the same
            frames and requests without the convolutions, > 1 M inputs in 10 minutes.
    python -m tinyexit.firmware_bridge.reliability.fuzz_c [RUN_DIR] --seconds 600

Without RUN_DIR the small trained run of tests/helpers (source checkout only) is built once
in the work directory (needs torch and TensorFlow, like `tinyexit export`).
Figures go to WORKDIR/<target>/fuzz-c.json, crashing inputs to WORKDIR/<target>/crashes.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from tinyexit.errors import UserError
from tinyexit.firmware_bridge.protocol import constants as pc
from tinyexit.firmware_bridge.firmware.host import FIRMWARE_DIR, kernel_sources

FUZZ_DIR = FIRMWARE_DIR / "fuzz"
# fuzz targets: the harness sources and the core files each links (the rest of its program is the models)
# (the mlperf app is built with a compiled-in exit policy, as firmware_build does when the manifest has one)
_PROTOCOL_CORE = ("te_frame.c", "te_fec.c", "te_device.c", "te_run.c", "te_policy.c", "te_sampler.c", "te_status.c",
                  "te_port_weak.c")
TARGETS = {"protocol": (("fuzz_protocol.c", "fuzz_oracle.c"), _PROTOCOL_CORE, ()),
           # the same harness against stub kernels (fuzz/te_kernels_stub.c): the protocol alone, at libFuzzer speed
           "protocol_stub": (("fuzz_protocol.c", "fuzz_oracle.c"), _PROTOCOL_CORE, ()),
           "mlperf": (("fuzz_mlperf.c",), ("te_policy.c", "te_status.c", "te_sampler.c", "te_port_weak.c"),
                      ("-DTE_MLPERF_POLICY_ID=0", "-DTE_MLPERF_THRESHOLD=0.6f"))}
# the files whose line coverage a run reports
_PROTOCOL_COVERED = ("core/te_frame.c", "core/te_fec.c", "core/te_device.c", "core/te_run.c", "core/te_policy.c",
                     "core/te_sampler.c")
COVERED = {"protocol": _PROTOCOL_COVERED, "protocol_stub": _PROTOCOL_COVERED,
           "mlperf": ("apps/mlperf_main.c", "core/te_policy.c")}
CLANG_INSTALL = "sudo apt-get install -y clang libclang-rt-14-dev"
MODELS = ("classifier", "denoiser")   # firmware images, in the order of the control byte
_SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:", "protocol violation",
                    "ERROR: libFuzzer", "deadly signal")


@dataclass(frozen=True)
class FuzzCConfig:
    seconds: int = 600              # wall time of the fuzzing run
    target: str = "protocol"        # protocol (core/: frames and requests) | mlperf (apps/mlperf_main.c)
    kernels: str = "reference"      # kernel set linked in (arm_dsp runs on the host through its C emulation)
    seed: int = 1                   # libFuzzer's seed
    max_len: int = 4096             # longest input, bytes
    input_timeout_s: int = 60       # one input taking longer is reported as a hang
    coverage: bool = True           # line coverage of core/ over the final corpus (llvm-cov)
    fresh: bool = False             # forget the corpus of earlier runs in the work directory
    progress_s: float = 30.0        # a progress line this often

    def __post_init__(self):
        if not 1 <= self.seconds <= 7 * 86400:
            raise UserError(f"--seconds {self.seconds}: use 1 .. 604800")
        kernel_sources(self.kernels)
        if self.target not in TARGETS:
            raise UserError(f"--target {self.target}: unknown; choose one of {', '.join(TARGETS)}")
        if not 16 <= self.max_len <= 1 << 20:
            raise UserError(f"--max-len {self.max_len}: use 16 .. 1048576 bytes")
        if self.input_timeout_s < 1 or self.progress_s <= 0:
            raise UserError(f"input timeout {self.input_timeout_s} s / progress {self.progress_s} s: must be positive")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "FuzzCConfig":
        return cls(**d)


def check_clang(cc: str = "clang") -> None:
    """UserError with the install command unless `cc` links a libFuzzer + ASan + UBSan program."""
    if shutil.which(cc) is None:
        raise UserError(f"{cc} not found; install clang and libFuzzer with: {CLANG_INSTALL}")
    res = subprocess.run([cc, "-x", "c", "-", "-fsanitize=fuzzer,address,undefined", "-o", "/dev/null"],
                         input="#include <stdint.h>\n#include <stddef.h>\n"
                               "int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { return 0; }\n",
                         capture_output=True, text=True)
    if res.returncode != 0:
        raise UserError(f"{cc} cannot link -fsanitize=fuzzer,address,undefined ({res.stderr.strip()[-200:]}); "
                        f"install libFuzzer with: {CLANG_INSTALL}")


# --- build -------------------------------------------------------------------------------
def model_sources(run_dir: Path, out: Path, kernels: str) -> tuple[list[Path], list[Path], list[Path]]:
    """(glue sources, layer sources, include dirs) of both models' firmware images: te_models (classifier, with the
    monolithic models of RUN FULL) and te_models_denoiser (without them, with its sampler)."""
    from tinyexit.firmware_bridge.firmware.build import FirmwareConfig, ensure_sources, models_c
    from tinyexit.rundir import read_json

    glue, compute, incs = [], [], []
    for model in MODELS:
        mdir = run_dir / "export" / model
        if not (mdir / "manifest.json").is_file():
            raise UserError(f"{mdir}/manifest.json: missing; fuzz-c needs both models exported "
                            f"('tinyexit export {run_dir}')")
        manifest = read_json(mdir / "manifest.json")
        c_dir = ensure_sources(run_dir, model)
        # The denoiser image is linked as `--no-monolithic` builds are, so RUN FULL meets REQ_UNSUPPORTED.
        monos = [(s, json.loads((c_dir / f"{model}_{s}_codegen.json").read_text())) for s in ("full", "all_exits")
                 if model == "classifier" and (c_dir / f"{model}_{s}_codegen.json").is_file()]
        segments = json.loads((c_dir / "codegen.json").read_text())
        # The smallest input buffer the model allows, so that one LOAD_INPUT frame can reach its end.
        capacity = max(s["in_bytes"] for s in segments["segments"])
        text = models_c(model, manifest, segments, monos,
                        FirmwareConfig(kernels=kernels, verify=False, input_capacity=capacity))
        if model != "classifier":  # a second firmware image in the same program
            text = f"#define te_models te_models_{model}\n" + text
        (out / f"te_models_{model}.c").write_text(text)
        glue.append(out / f"te_models_{model}.c")
        compute += [c_dir / f"{model}_model.c", *(c_dir / f"{model}_{s}_model.c" for s, _ in monos)]
        incs.append(c_dir)
    return glue, compute, incs


def build_fuzzer(run_dir, out, kernels: str = "reference", coverage: bool = False, cc: str = "clang",
                 extra_flags: tuple[str, ...] = (), target: str = "protocol") -> Path:
    """Compile a fuzz target (TARGETS) + its core files + both models + one kernel set; returns the executable.

    The protocol code, the models' glue and the arena and input buffers get ASan and UBSan.  The kernels
    and generated layers get UBSan only, at -O2: they never see a host length (every offset and size
    they use is a constant of the memory plan), and uninstrumented they run several times faster, so
    the fuzzer tries several times more inputs.
    """
    out = Path(out)
    (out / "obj").mkdir(parents=True, exist_ok=True)
    glue, compute, incs = model_sources(Path(run_dir), out, kernels)
    core = FIRMWARE_DIR / "core"
    if coverage:  # line counts of a corpus replay, no sanitizers
        flags, compute_flags = ["-fsanitize=fuzzer", "-fprofile-instr-generate", "-fcoverage-mapping"], []
    else:
        flags = ["-fsanitize=fuzzer,address,undefined", "-fno-sanitize-recover=all"]
        compute_flags = ["-fsanitize=undefined", "-fno-sanitize-recover=all"]
    base = [cc, "-std=c99", "-g", "-Wall", "-Wextra", "-Werror", *(["-DTE_EMULATE_DSP"] if kernels == "arm_dsp" else []),
            f"-I{core}", f"-I{FIRMWARE_DIR / 'kernels'}", f"-I{FIRMWARE_DIR / 'ports'}", *(f"-I{d}" for d in incs)]
    ksrc = [FUZZ_DIR / "te_kernels_stub.c"] if target == "protocol_stub" else kernel_sources(kernels)
    _clang([*base, "-O2", *compute_flags, "-c", *map(str, compute), *map(str, ksrc)], out / "obj")
    objs = sorted((out / "obj").glob("*.o"))
    harness, core_files, defines = TARGETS[target]
    if not coverage and "te_fec.c" in core_files:
        # The Reed-Solomon arithmetic compares table values in its inner loops; libFuzzer's comparison
        # tracing there cost a third of the run time and teaches nothing a mutation can use (a codeword is
        # found by the search, not by matching one compare), so that file keeps edge coverage and sanitizers only.
        fec_obj = out / "obj_fec" / "te_fec.o"
        fec_obj.parent.mkdir(exist_ok=True)
        _clang([*base, "-O2", "-fsanitize=fuzzer-no-link,address,undefined", "-fno-sanitize-recover=all",
                "-fno-sanitize-coverage=trace-cmp", *defines, *extra_flags, "-c", str(core / "te_fec.c"),
                "-o", str(fec_obj)], out)
        objs = [*objs, fec_obj]
        core_files = tuple(n for n in core_files if n != "te_fec.c")
    exe = out / (f"fuzz_{target}" + ("_cov" if coverage else ""))
    _clang([*base, "-O2", *flags, *defines, *extra_flags, *(str(FUZZ_DIR / n) for n in harness),
            *(str(core / n) for n in core_files), *map(str, glue), *map(str, objs), "-lm", "-o", str(exe)], out)
    return exe


def _clang(cmd: list[str], cwd: Path) -> None:
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd)
    if res.returncode != 0:
        raise UserError(f"clang build of a fuzz target in {FUZZ_DIR} failed:\n{res.stderr.strip()[-4000:]}")


# --- run ---------------------------------------------------------------------------------
def run_fuzzer(exe: Path, corpus: Path, seeds: Path, artifacts: Path, cfg: FuzzCConfig, log=print) -> dict:
    """One libFuzzer process for cfg.seconds; returns its figures (executions, coverage, reports)."""
    from tinyexit.firmware_bridge.reliability.fuzz_c_seeds import dictionary

    artifacts.mkdir(parents=True, exist_ok=True)
    corpus.mkdir(parents=True, exist_ok=True)
    log_path = artifacts.parent / "libfuzzer.log"
    cmd = [str(exe), f"-max_total_time={cfg.seconds}", f"-seed={cfg.seed}", f"-max_len={cfg.max_len}",
           f"-timeout={cfg.input_timeout_s}", "-rss_limit_mb=2048", "-print_final_stats=1", "-use_value_profile=1",
           f"-dict={dictionary(artifacts.parent / 'fuzz.dict', cfg.target)}",
           f"-artifact_prefix={artifacts}/", str(corpus), str(seeds)]
    t0 = time.monotonic()
    with open(log_path, "w") as err:
        proc = subprocess.Popen(cmd, stdout=err, stderr=subprocess.STDOUT)
        try:
            next_line = t0 + cfg.progress_s
            while proc.poll() is None:
                time.sleep(0.5)
                if time.monotonic() >= next_line:
                    next_line += cfg.progress_s
                    st = _status(log_path.read_text(errors="replace"))
                    log(f"fuzz-c: {time.monotonic() - t0:5.0f}/{cfg.seconds} s, {st.get('executions', 0)} inputs, "
                        f"cov {st.get('cov', 0)}, corpus {st.get('corpus', 0)}")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    text = log_path.read_text(errors="replace")
    figures = {"seconds": round(time.monotonic() - t0, 1), "exit_status": proc.returncode, **_status(text)}
    figures["reports"] = [line.strip() for line in text.splitlines() if any(k in line for k in _SANITIZER_MARKS)][:20]
    figures["crash_files"] = sorted(p.name for p in artifacts.iterdir())
    figures["log"] = str(log_path)
    return figures


def replay(exe: Path, *inputs: Path) -> dict:
    """Run the fuzz target once over files or corpus directories (no fuzzing): what they reached, any reports."""
    res = subprocess.run([str(exe), "-runs=0", f"-artifact_prefix={exe.parent}/", *map(str, inputs)],
                         capture_output=True, text=True, timeout=600)
    text = res.stdout + res.stderr
    return {"exit_status": res.returncode, **_status(text),
            "reports": [line.strip() for line in text.splitlines() if any(k in line for k in _SANITIZER_MARKS)]}


def _status(text: str) -> dict:
    """Figures from libFuzzer's output: the last status line, final stats, the harness's 'reached' line."""
    out: dict = {}
    status = re.findall(r"^#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+) corp: (\d+)/", text, re.M)
    if status:
        out.update(zip(("executions", "cov", "features", "corpus"), map(int, status[-1])))
    for key, name in (("number_of_executed_units", "executions"), ("average_exec_per_sec", "exec_per_s"),
                      ("new_units_added", "new_units"), ("peak_rss_mb", "peak_rss_mb"),
                      ("slowest_unit_time_sec", "slowest_input_s")):
        hit = re.search(rf"stat::{key}:\s+(\d+)", text)
        if hit:
            out[name] = int(hit.group(1))
    reached = re.findall(r"fuzz_\w+: reached (.*)$", text, re.M)
    if reached:
        out["reached"] = _reached(reached[-1])
    return out


def _reached(line: str) -> dict:
    """'inputs=3,4 info=5 ... codes=0x0101:2,0x0203:1,' -> a dict of counts."""
    out: dict = {}
    for key, value in re.findall(r"(\w+)=(\S*)", line):
        if key == "codes":
            out["codes"] = {pc.ERROR_NAMES.get(int(c, 16), c): int(n)
                            for c, n in (item.split(":") for item in value.split(",") if item)}
        else:
            nums = [int(v) for v in value.split(",")]
            out[key] = nums if len(nums) > 1 else nums[0]
    return out


def line_coverage(exe: Path, corpus: Path, work: Path, target: str = "protocol") -> dict:
    """Line and branch coverage of the target's C files (COVERED) when the corpus is replayed once (llvm-cov)."""
    profdata, cov = shutil.which("llvm-profdata") or "llvm-profdata-14", shutil.which("llvm-cov") or "llvm-cov-14"
    if shutil.which(profdata) is None or shutil.which(cov) is None:
        return {"skipped": "llvm-profdata/llvm-cov not found (Debian package llvm-14)"}
    raw = work / "cov.profraw"
    subprocess.run([str(exe), "-runs=0", f"-artifact_prefix={work}/", str(corpus)], capture_output=True, timeout=3600,
                   env={**os.environ, "LLVM_PROFILE_FILE": str(raw)})
    subprocess.run([profdata, "merge", "-sparse", str(raw), "-o", str(work / "cov.profdata")], check=True,
                   capture_output=True)
    res = subprocess.run([cov, "export", "-summary-only", str(exe), f"-instr-profile={work / 'cov.profdata'}",
                          *(str(FIRMWARE_DIR / n) for n in COVERED[target])],
                         capture_output=True, text=True, check=True)
    files = json.loads(res.stdout)["data"][0]["files"]
    return {Path(f["filename"]).name: {k: round(f["summary"][k]["percent"], 1) for k in ("lines", "branches")}
            for f in files}


def fuzz_c(run_dir=None, workdir="build/fuzz-c", cfg: FuzzCConfig = FuzzCConfig(), log=print) -> dict:
    """Build, seed and run one fuzz target; returns (and writes to WORKDIR/<target>/fuzz-c.json) its figures."""
    from tinyexit import __version__
    from tinyexit.firmware_bridge.reliability.fuzz_c_seeds import seed_corpus

    check_clang()
    base = Path(workdir).resolve()
    work = base / cfg.target
    work.mkdir(parents=True, exist_ok=True)
    if run_dir is None and all((base / "tiny_run" / "export" / m / "manifest.json").is_file() for m in MODELS):
        run_dir = base / "tiny_run"
        log(f"fuzz-c: no RUN_DIR; using the small test run built earlier in {run_dir}")
    elif run_dir is None:
        from tinyexit.firmware_bridge.reliability.dev_run import exported_run  # tests/helpers, else UserError

        log(f"fuzz-c: no RUN_DIR; building the small test run in {base} (once, about a minute)")
        run_dir = exported_run(base)
    run_dir = Path(run_dir).resolve()
    kernels = "stub" if cfg.target == "protocol_stub" else cfg.kernels
    log(f"fuzz-c: building fuzz_{cfg.target} with clang (libFuzzer, ASan, UBSan), {kernels} kernels, "
        f"the models of {run_dir}")
    exe = build_fuzzer(run_dir, work / "build", cfg.kernels, target=cfg.target)
    seeds = seed_corpus(run_dir, work / "seeds", cfg.target)
    corpus = work / "corpus"
    if cfg.fresh and corpus.exists():
        shutil.rmtree(corpus)
    for old in (work / "crashes").glob("*") if (work / "crashes").is_dir() else ():
        old.unlink()
    log(f"fuzz-c: {len(list(seeds.iterdir()))} seeds, "
        f"{len(list(corpus.glob('*'))) if corpus.is_dir() else 0} corpus inputs kept; fuzzing {cfg.seconds} s")
    figures = run_fuzzer(exe, corpus, seeds, work / "crashes", cfg, log)
    figures["ok"] = figures["exit_status"] == 0 and not figures["reports"] and not figures["crash_files"]
    if cfg.coverage and figures["ok"]:
        log(f"fuzz-c: replaying the corpus for the line coverage of {', '.join(COVERED[cfg.target])}")
        cov_exe = build_fuzzer(run_dir, work / "build", cfg.kernels, coverage=True, target=cfg.target)
        figures["line_coverage"] = line_coverage(cov_exe, corpus, work / "build", cfg.target)
    result = {"tinyexit_version": __version__, "config": cfg.to_dict(), "run_dir": str(run_dir), **figures}
    (work / "fuzz-c.json").write_text(json.dumps(result, indent=2) + "\n")
    log(f"fuzz-c: {figures.get('executions', 0)} inputs in {figures['seconds']} s "
        f"({figures.get('exec_per_s', 0)}/s), cov {figures.get('cov')}, features {figures.get('features')}, "
        f"corpus {figures.get('corpus')}; crashes {len(figures['crash_files'])}, sanitizer/protocol reports "
        f"{len(figures['reports'])} -> {work / 'fuzz-c.json'}")
    return result


# --- command line ---------------------------------------------------------------------------
def register_fuzz_c(acts) -> None:
    """Add `fuzz-c` to the `tinyexit reliability` actions (the subparsers object of reliability_cli.register)."""
    z = acts.add_parser("fuzz-c", help="libFuzzer + ASan/UBSan on the firmware's C frame decoder and request handler",
                        description="Fuzz the firmware's protocol code (core/) compiled for the host with clang, "
                                    "libFuzzer, AddressSanitizer and UndefinedBehaviorSanitizer, with the run's "
                                    "classifier and denoiser linked in. Exits 1 on any crash, sanitizer report or "
                                    "protocol violation (inputs kept in WORKDIR/crashes).")
    _arguments(z)
    z.set_defaults(handler=_fuzz_c)


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", nargs="?", default=None,
                   help="run with the classifier and denoiser exported (default: build the small test run)")
    p.add_argument("--seconds", type=int, default=600, help="fuzzing time (default 600)")
    p.add_argument("--target", default="protocol", choices=sorted(TARGETS),
                   help="protocol: the frame decoder and request handler (default); mlperf: the MLPerf Tiny DUT "
                        "command parser")
    p.add_argument("--kernels", default="reference", help="kernel set: reference or arm_dsp (default reference)")
    p.add_argument("--seed", type=int, default=1, help="libFuzzer seed (default 1)")
    p.add_argument("--workdir", default="build/fuzz-c", help="build, corpus and crashes (default build/fuzz-c)")
    p.add_argument("--fresh", action="store_true", help="start from the seeds, forgetting earlier corpus inputs")
    p.add_argument("--no-coverage", action="store_true", help="skip the llvm-cov line coverage of core/")


def _fuzz_c(args: argparse.Namespace) -> int:
    cfg = FuzzCConfig(seconds=args.seconds, target=args.target, kernels=args.kernels, seed=args.seed, fresh=args.fresh,
                      coverage=not args.no_coverage)
    res = fuzz_c(args.run_dir, args.workdir, cfg)
    if not res["ok"]:
        raise UserError(f"fuzz-c found a problem: {(res['reports'] or res['crash_files'] or ['exit status'])[0]}; "
                        f"inputs in {Path(args.workdir) / args.target / 'crashes'}, log {res['log']}")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m tinyexit.firmware_bridge.reliability.fuzz_c",
                                description="Fuzz the firmware's C protocol code (see tinyexit reliability fuzz-c).")
    _arguments(p)
    args = p.parse_args(argv)
    try:
        return _fuzz_c(args)
    except UserError as exc:
        print(f"error: {exc}")
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
