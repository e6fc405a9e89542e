"""`tinyexit agent-bundle`: everything a Raspberry Pi needs to run the agent, without the package index
knowing tinyexit and without a build backend on the Pi.

`pack_agent_bundle(src, AgentBundleConfig)` writes OUT/ with
  wheels/tinyexit-<version>-py3-none-any.whl   pure Python, written here as a zip (a wheel needs no
                                               setuptools to install, so bookworm's pip 23 takes it)
  bundles/<model>/                             the export bundle(s), as exported (bench/ results left out)
  install.sh                                   venv + the wheel + the one runtime the platform can get
  README.txt                                   the commands, also printed by install.sh
The wheel is built from the tinyexit that is running (editable or installed), byte for byte reproducible:
files sorted, timestamps fixed.
"""
from __future__ import annotations

import base64
import hashlib
import importlib.util
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tinyexit import __version__
from tinyexit.errors import UserError

# Subpackages of the one `tinyexit` namespace (pyproject's package-dir); each is walked for its files.
PACKAGES = ("tinyexit", "tinyexit.models", "tinyexit.export", "tinyexit.firmware_bridge", "tinyexit.eval")
REQUIRES = ("numpy>=1.24", "pyserial>=3.5", "tqdm>=4.60")   # pyproject's base dependencies: the agent's
_SKIP_DIRS = {"__pycache__", ".pytest_cache", "build"}
_EPOCH = (1980, 1, 1, 0, 0, 0)   # zip's earliest time: the wheel does not change with file mtimes
# What an offline Pi needs besides tinyexit, per CPU: (packages with their dependencies, packages without).
# armv7l: PyPI has no numpy wheel, so numpy comes from the distro (install.sh uses --system-site-packages).
RUNTIME_WHEELS = {"aarch64": (("ai-edge-litert", "pyserial", "tqdm"), ()),
                  "armv7l": (("pyserial", "tqdm"), ("tflite-runtime",)),
                  "x86_64": (("ai-edge-litert", "pyserial", "tqdm"), ())}
GLIBC = 36   # bookworm's glibc 2.36: manylinux_2_17 .. 2_36 wheels run there


@dataclass(frozen=True)
class AgentBundleConfig:
    out: str
    models: tuple[str, ...] = ()   # which bundles of a run (default: every RUN/export/<model>/)
    wheels_for: tuple[str, ...] = ()   # also fetch the runtime's wheels for these CPUs (offline install)
    python_version: str = "3.11"       # the Pi's Python (bookworm: 3.11), for those wheels

    def __post_init__(self):
        bad = [a for a in self.wheels_for if a not in RUNTIME_WHEELS]
        if bad:
            raise UserError(f"--wheels {', '.join(bad)}: choose from {', '.join(RUNTIME_WHEELS)}")

    def to_dict(self) -> dict:
        return {"out": self.out, "models": list(self.models), "wheels_for": list(self.wheels_for),
                "python_version": self.python_version}


def pack_agent_bundle(src: str | Path, cfg: AgentBundleConfig, log=print) -> dict:
    """Stage entry: write cfg.out from a run directory or one bundle directory; returns what was written."""
    bundles = find_bundles(Path(src), cfg.models)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    wheel = build_wheel(out / "wheels")
    for arch in cfg.wheels_for:
        download_wheels(arch, out / "wheels", cfg.python_version, log)
    copied = []
    for b in bundles:
        dest = out / "bundles" / b.name
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(b, dest, ignore=shutil.ignore_patterns("bench", "__pycache__"))
        copied.append(dest)
    script = out / "install.sh"
    script.write_text(install_script(wheel.name, [d.name for d in copied]))
    script.chmod(0o755)
    (out / "README.txt").write_text(readme(wheel.name, [d.name for d in copied]))
    log(f"agent-bundle: {wheel.name} + {', '.join(d.name for d in copied)} -> {out} "
        f"(on the Pi: sh {out.name}/install.sh)")
    return {"wheel": str(wheel), "bundles": [str(d) for d in copied], "install": str(script)}


def download_wheels(arch: str, dest: Path, python_version: str, log=print) -> None:
    """The runtime's wheels for `arch` into dest (pip download from the package index, on the host)."""
    tags = [f"manylinux_2_{v}_{arch}" for v in range(17, GLIBC + 1)] + [f"manylinux2014_{arch}"]
    with_deps, alone = RUNTIME_WHEELS[arch]
    base = [sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "--implementation", "cp",
            "--python-version", python_version, "-d", str(dest), *(f"--platform={t}" for t in tags)]
    for pkgs, extra in ((with_deps, []), (alone, ["--no-deps"])):
        if not pkgs:
            continue
        done = subprocess.run([*base, *extra, *pkgs], capture_output=True, text=True)
        if done.returncode != 0:
            reason = (done.stderr.strip().splitlines() or ["pip failed"])[-1]
            raise UserError(f"--wheels {arch}: pip download {' '.join(pkgs)} failed ({reason}); "
                            "check the network or drop --wheels")
    log(f"agent-bundle: {arch} wheels for Python {python_version} ({', '.join(with_deps + alone)}) -> {dest}")


def find_bundles(src: Path, models: tuple[str, ...]) -> list[Path]:
    if (src / "manifest.json").is_file():
        if models and src.name not in models:
            raise UserError(f"{src}: is the bundle '{src.name}', not {', '.join(models)}; drop --model")
        return [src]
    export = src / "export"
    found = sorted(p.parent for p in export.glob("*/manifest.json")) if export.is_dir() else []
    if models:
        missing = [m for m in models if not (export / m / "manifest.json").is_file()]
        if missing:
            raise UserError(f"{export}: no bundle {', '.join(missing)} (has {', '.join(p.name for p in found) or 'none'}); "
                            "run 'tinyexit export' first")
        found = [export / m for m in models]
    if not found:
        raise UserError(f"{src}: neither a bundle (manifest.json) nor a run with export/<model>/manifest.json; "
                        "run 'tinyexit export' first")
    return found


def _package_dirs() -> list[tuple[str, Path]]:
    """(dotted name, directory) of each subpackage, found without importing the subpackage itself
    (tinyexit.models would pull torch in)."""
    out = []
    for name in PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            raise UserError(f"package {name} not found; reinstall tinyexit")
        out.append((name, Path(list(spec.submodule_search_locations)[0])))
    return out


def wheel_files() -> list[tuple[str, Path]]:
    """(path inside the wheel, file on disk) of every module and data file, sorted."""
    dirs = _package_dirs()
    owned = {d.resolve() for _, d in dirs}
    files = {}
    for name, root in dirs:
        prefix = name.replace(".", "/")
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(root)
            if path.is_dir() or any(part in _SKIP_DIRS or part.startswith(".") for part in rel.parts):
                continue
            # a nested directory that is its own subpackage root is walked under its own name
            if any(p.resolve() in owned and p.resolve() != root.resolve() for p in path.parents):
                continue
            if path.suffix in (".pyc", ".pyo", ".o", ".elf", ".so"):
                continue
            files[f"{prefix}/{rel.as_posix()}"] = path
    return sorted(files.items())


def _digest(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def build_wheel(out_dir: str | Path) -> Path:
    """A py3-none-any wheel of the running tinyexit with the agent's dependencies only."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    info = f"tinyexit-{__version__}.dist-info"
    meta = {
        f"{info}/METADATA": "".join([
            "Metadata-Version: 2.1\nName: tinyexit\n", f"Version: {__version__}\n",
            "Summary: Early-exit networks from training to measured numbers on edge devices (agent wheel)\n",
            "Requires-Python: >=3.10\n", *(f"Requires-Dist: {r}\n" for r in REQUIRES),
            "Provides-Extra: agent\nRequires-Dist: ai-edge-litert>=2.0; extra == \"agent\"\n"]),
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: tinyexit agent-bundle\nRoot-Is-Purelib: true\n"
                         "Tag: py3-none-any\n",
        f"{info}/entry_points.txt": "[console_scripts]\ntinyexit = tinyexit.cli:main\n",
        f"{info}/top_level.txt": "tinyexit\n",
    }
    path = out_dir / f"tinyexit-{__version__}-py3-none-any.whl"
    record = []
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        def put(arc: str, data: bytes) -> None:
            zi = zipfile.ZipInfo(arc, _EPOCH)
            zi.external_attr = 0o644 << 16
            zi.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(zi, data)
            record.append(f"{arc},{_digest(data)},{len(data)}")
        for arc, src in wheel_files():
            put(arc, src.read_bytes())
        for arc, text in meta.items():
            put(arc, text.encode())
        record.append(f"{info}/RECORD,,")
        zi = zipfile.ZipInfo(f"{info}/RECORD", _EPOCH)
        zi.external_attr = 0o644 << 16
        zf.writestr(zi, "\n".join(record) + "\n", zipfile.ZIP_DEFLATED)
    return path


def start_line(venv: str, bundle: str, port: str = "/dev/ttyGS0", runtime: str = "auto") -> str:
    return f"{venv}/bin/tinyexit agent --port {port} --artifact {bundle} --runtime {runtime}"


def readme(wheel: str, models: list[str]) -> str:
    first = models[0]
    return (f"tinyexit agent bundle ({wheel}; bundles: {', '.join(models)})\n\n"
            "On the Raspberry Pi (Raspberry Pi OS bookworm, 64-bit aarch64 or 32-bit armv7l):\n"
            "  sh install.sh                       # venv in ~/tinyexit-venv + the runtime this CPU can get\n"
            "  sh install.sh --system-site-packages  # reuse the distro's numpy (apt install python3-numpy)\n"
            "  sh install.sh --runtime onnxruntime   # ONNX Runtime instead of LiteRT / tflite-runtime\n"
            "  sh install.sh --offline             # only wheels placed in ./wheels (pip download on the host)\n\n"
            "Then start the agent (the line install.sh prints):\n"
            f"  {start_line('~/tinyexit-venv', f'THIS_DIR/bundles/{first}')}\n"
            "and bench it from the host: tinyexit bench RUN --target /dev/ttyACM0 (docs/raspberry-pi.md).\n")


def install_script(wheel: str, models: list[str]) -> str:
    return _INSTALL.replace("@WHEEL@", wheel).replace("@MODEL@", models[0])


# POSIX sh: Raspberry Pi OS has dash as /bin/sh.  A venv sidesteps PEP 668 ("externally-managed-environment").
_INSTALL = r"""#!/bin/sh
# Installs the tinyexit agent into a venv on a Raspberry Pi (written by `tinyexit agent-bundle`).
# usage: sh install.sh [--venv DIR] [--system-site-packages] [--runtime auto|litert|tflite_runtime|onnxruntime]
#                      [--offline]
# PYTHON=python3.11 sh install.sh ... picks the interpreter the venv is made from.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
VENV="$HOME/tinyexit-venv"
SSP=""
RUNTIME=auto
OFFLINE=""
PYTHON=${PYTHON:-python3}
while [ $# -gt 0 ]; do
  case "$1" in
    --venv) VENV="$2"; shift 2 ;;
    --system-site-packages) SSP="--system-site-packages"; shift ;;
    --runtime) RUNTIME="$2"; shift 2 ;;
    --offline) OFFLINE="--no-index"; shift ;;
    -h|--help) sed -n '2,4p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
ARCH=$(uname -m)
if [ "$RUNTIME" = auto ]; then
  case "$ARCH" in
    aarch64|arm64|x86_64) RUNTIME=litert ;;
    # PyPI has no armv7l numpy: the distro's (apt install python3-numpy) is used, or piwheels'
    armv7l|armv6l|armhf) RUNTIME=tflite_runtime; SSP="--system-site-packages" ;;
    *) echo "install.sh: no LiteRT or tflite-runtime wheel for $ARCH; use --runtime onnxruntime" >&2; exit 2 ;;
  esac
fi
case "$RUNTIME" in
  litert) PKGS="ai-edge-litert" ;;
  # tflite-runtime 2.14 was built against numpy 1.x; armv7l has no numpy wheel on PyPI: the distro's numpy
  # (apt install python3-numpy, then --system-site-packages) or piwheels provides it
  tflite_runtime) PKGS="tflite-runtime numpy<2" ;;
  onnxruntime) PKGS="onnxruntime" ;;
  *) echo "install.sh: --runtime $RUNTIME: choose auto, litert, tflite_runtime or onnxruntime" >&2; exit 2 ;;
esac
if ! "$PYTHON" -m venv $SSP "$VENV"; then
  echo "install.sh: python3 -m venv failed; on Debian / Raspberry Pi OS: sudo apt install python3-venv" >&2
  exit 1
fi
# shellcheck disable=SC2086
"$VENV/bin/python" -m pip install $OFFLINE --find-links "$HERE/wheels" "$HERE/wheels/@WHEEL@" $PKGS
"$VENV/bin/tinyexit" --version
echo "install.sh: installed into $VENV ($ARCH, runtime $RUNTIME). Start the agent with:"
echo "  $VENV/bin/tinyexit agent --port /dev/ttyGS0 --artifact $HERE/bundles/@MODEL@ --runtime $RUNTIME"
"""
