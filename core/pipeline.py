"""The main job, `tinyexit demo`: train -> export -> verify -> benchmark -> report.

Data flows forward: training chooses the exit threshold on val, export copies it into
the bundle, and the report comes last.  Only composes stage entry functions; each stage
prints a line (and one progress bar, or plain lines outside a terminal).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

from tinyexit.rundir import prepare_output_dir


@dataclass(frozen=True)
class DemoConfig:
    dataset: str = "digits"
    epochs: int | None = None          # classifier epochs override (quick runs)
    denoiser_epochs: int | None = None
    target: str | None = None          # None: qemu when the Arm toolchain and QEMU are present, else agent
    force: bool = False


class _Clock:
    def __init__(self):
        self.t0 = time.time()

    def stage(self, name: str) -> None:
        print(f"[{time.time() - self.t0:6.1f} s] == {name}", flush=True)


def run_demo(out: str | Path, cfg: DemoConfig) -> Path:
    from tinyexit.eval.report import write_report
    from tinyexit.export.config import ExportConfig, VerifyConfig
    from tinyexit.export.exporter import export_run
    from tinyexit.export.verify import verify_run
    from tinyexit.models.data import load_dataset

    clock = _Clock()
    run = prepare_output_dir(out, cfg.force)
    splits = load_dataset(cfg.dataset)
    clock.stage("train: early-exit classifier, baseline, small networks; exit threshold chosen on val")
    _train_classifiers(splits, cfg, run)
    clock.stage("train: binary denoiser")
    _train_denoiser(splits, cfg, run)
    clock.stage("export: int8 ONNX / TFLite / TFLite Micro / C")
    export_run(run, ExportConfig())
    clock.stage("verify: every artifact on the test split")
    verify_run(run, VerifyConfig())
    target = _benchmark(run, cfg, clock)
    if target == "qemu":
        _device_studies(run, clock)
    clock.stage("report")
    write_report(run)
    clock.stage(f"done: {run / 'report' / 'report.md'}")
    return run


def choose_target(requested: str | None) -> tuple[str, str]:
    """The benchmark target and why: the emulated Cortex-M4 when its toolchain is here, else the host agent."""
    if requested:
        return requested, "requested with --target"
    from tinyexit.firmware_bridge.harness.qemu import qemu_available

    ok, why = qemu_available()
    if ok:
        return "qemu", "the embedded default: generated C firmware on an emulated Cortex-M4 (QEMU mps2-an386)"
    return "agent", f"QEMU target unavailable ({why}); falling back to the host agent"


def _device_studies(run: Path, clock: _Clock) -> None:
    """On the emulated board: the per-kernel profile the report predicts latency from, and the denoiser
    generating on the device at full depth and with its exit schedule."""
    from tinyexit.firmware_bridge.harness.sampler import generation_study
    from tinyexit.profile_cli import ProfileConfig, profile_device, write_layer_tables

    clock.stage("profile-device: per-kernel latency model from single-operator models on QEMU")
    profile_device(run / "profiles" / "qemu.json", ProfileConfig(target="qemu"))
    write_layer_tables(run)
    clock.stage("denoiser: generating on the QEMU firmware, full depth and with the exit schedule")
    generation_study(run, seeds=list(range(1, 9)))


def _benchmark(run: Path, cfg: DemoConfig, clock: _Clock) -> str:
    from tinyexit.firmware_bridge.harness.bench import BenchConfig, run_benchmark

    target, why = choose_target(cfg.target)
    clock.stage(f"bench: classifier on target '{target}' ({why})")
    run_benchmark(run, [target], BenchConfig(model="classifier"))
    # The denoiser's segments give the latency model points of a second shape of network.
    clock.stage(f"bench: denoiser segments on target '{target}'")
    run_benchmark(run, [target], BenchConfig(model="denoiser", modes=("full", "segments"),
                                             name=f"{_dir_name(target)}-denoiser"))
    if target != "agent":
        # The host agent is cheap: its numbers beside the microcontroller's show how targets differ.
        clock.stage("bench: classifier on the host agent (for comparison)")
        run_benchmark(run, ["agent"], BenchConfig(model="classifier"))
    return target


def _dir_name(target: str) -> str:
    from tinyexit.firmware_bridge.harness.targets import bench_name

    return bench_name([target])


def _train_classifiers(splits, cfg: DemoConfig, run: Path) -> None:
    from tinyexit.models.train_run import ClassifierRunConfig, train_classifiers

    ccfg = ClassifierRunConfig(dataset=cfg.dataset)
    if cfg.epochs is not None:
        ccfg = replace(ccfg, train=replace(ccfg.train, epochs=cfg.epochs))
    train_classifiers(splits, ccfg, run)


def _train_denoiser(splits, cfg: DemoConfig, run: Path) -> None:
    from tinyexit.models.train_denoiser import DenoiserRunConfig, train_denoiser

    dcfg = DenoiserRunConfig(dataset=cfg.dataset)
    if cfg.denoiser_epochs is not None:
        dcfg = replace(dcfg, epochs=cfg.denoiser_epochs)
    train_denoiser(splits, dcfg, run)
