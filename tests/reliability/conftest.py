"""Fixtures of the reliability tests: one small trained and exported run (export.testing, shared by the session).

`rel_template` copies that run once and prepares it for these tests: the
classifier only (no denoiser), its generated C (for the QEMU firmware), a
plain baseline for the report (the early-exit network's own files: the report
only needs something to compare with), and an exit threshold at the 50th
percentile of exit 0's confidence on the test split, recorded in the bundle as
an override, so early exit sends samples down every path (the tiny run is
barely trained).  With QEMU available the
firmware and its profile are built once into the template.  Tests get a fresh
copy (`rel_run`) they may damage.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

HAVE_QEMU = shutil.which("qemu-system-arm") is not None and shutil.which("arm-none-eabi-gcc") is not None


@pytest.fixture
def need_qemu():
    if not HAVE_QEMU:
        pytest.skip("needs qemu-system-arm and gcc-arm-none-eabi")


def _spread_threshold(run: Path) -> float:
    """Exit-0 max-softmax median on the test split (float predictions): about half the samples leave at 0."""
    logits = np.load(run / "predictions" / "early_exit.npz")["test_logits"][0].astype(np.float64)
    p = np.exp(logits - logits.max(1, keepdims=True))
    conf = (p / p.sum(1, keepdims=True)).max(1)
    return float(np.float32(np.percentile(conf, 50)))


@pytest.fixture(scope="session")
def rel_template(tmp_path_factory) -> Path:
    from tinyexit.export import codegen
    from helpers.trained_runs import exported_run

    src = exported_run(tmp_path_factory.mktemp("exported"))
    run = tmp_path_factory.mktemp("reliability") / "run"
    shutil.copytree(src, run, ignore=shutil.ignore_patterns("bench", "report", "firmware"))
    shutil.rmtree(run / "export" / "denoiser", ignore_errors=True)
    (run / "checkpoints" / "denoiser.pt").unlink(missing_ok=True)
    for ext, sub in (("pt", "checkpoints"), ("npz", "predictions")):
        shutil.copy(run / sub / f"early_exit.{ext}", run / sub / f"baseline.{ext}")
    man_path = run / "export" / "classifier" / "manifest.json"
    man = json.loads(man_path.read_text())
    chosen = (man.get("policy") or {}).get("params")
    man["policy"] = {"name": "max_softmax", "params": [_spread_threshold(run)],
                     "provenance": {"source": "override (--threshold)", "split": "test",
                                    "rule": "median exit-0 confidence (tests/reliability/conftest.py)",
                                    "chosen_value": chosen}}
    man_path.write_text(json.dumps(man, indent=2))
    if not (run / "export" / "classifier" / "c").is_dir():
        codegen.generate_c_for_run(run, "classifier")
    if HAVE_QEMU:
        from tinyexit.firmware_bridge.harness.qemu import start_qemu_target

        class _Cfg:
            kernels = "arm_dsp"

        _, handle = start_qemu_target(run, "classifier", _Cfg())  # builds fw.elf and profile.json once
        handle.close()
    return run


@pytest.fixture
def rel_run(rel_template, tmp_path) -> Path:
    """A private copy of the template run."""
    dst = tmp_path / "run"
    shutil.copytree(rel_template, dst)
    return dst


def _tree_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(root).rglob("*")) if p.is_file()}


@pytest.fixture
def tree_hashes():
    """sha256 of every file under a folder, by relative path."""
    return _tree_hashes


@pytest.fixture
def spawn_agent(tmp_path):
    """Start `tinyexit agent` processes on given ports; every one is stopped at the end of the test."""
    procs = []

    def start(port: str, artifact: Path, *extra: str) -> subprocess.Popen:
        log = open(tmp_path / f"agent-{len(procs)}.log", "ab")
        proc = subprocess.Popen([sys.executable, "-m", "tinyexit", "agent", "--port", port, "--artifact",
                                 str(artifact), *extra], stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        procs.append((proc, log))
        return proc

    yield start
    for proc, log in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        log.close()


@pytest.fixture
def qemu_device(rel_run, need_qemu):
    """Start QEMU on the run's firmware ourselves (a device the harness did not start): (start, handles)."""
    from tinyexit.firmware_bridge.harness.qemu import firmware_for, start_qemu

    elf = firmware_for(rel_run, "classifier", log=lambda msg: None)
    handles = []

    def start():
        url, handle = start_qemu(elf, elf.parent / "qemu.log")
        handles.append(handle)
        return url, handle

    yield start
    for h in handles:
        if h.proc.poll() is None:
            h.proc.kill()
        h.proc.wait()
