"""`tinyexit firmware build|profile RUN_DIR`: bare-metal firmware for a Cortex-M board (or QEMU's)."""
from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser("firmware", help="build the bare-metal Cortex-M firmware for a run's exported model",
                       description="Build and inspect the bare-metal firmware that runs a run's exported model "
                                   "(generated C) on a Cortex-M board or on QEMU's mps2-an386.")
    fsub = p.add_subparsers(dest="firmware_command", metavar="ACTION")
    fsub.required = True
    b = fsub.add_parser("build", help="compile RUN/export/<model>/c into an ELF with a flash/RAM report",
                        description="Compile the generated C with arm-none-eabi-gcc into "
                                    "RUN/firmware/<model>/<board>-<kernels>/fw.elf and write firmware.json "
                                    "(flash, RAM, TFLite Micro's arena, host-tier bit-exactness).")
    _common(b)
    b.add_argument("--app", default="firmware", choices=["firmware", "mlperf", "selftest"],
                   help="firmware: the tinyexit protocol (default); mlperf: the MLPerf Tiny DUT protocol; "
                        "selftest: per-layer timing printed on the UART")
    b.add_argument("--mlperf-model", default="", choices=["", "ic01", "kws01", "vww01", "ad01"],
                   help="--app mlperf: answer the runner's 'profile' with m-model-[<id>], the id its stock tests "
                        "file expects (default: the bundle's name and artifact hash)")
    b.add_argument("--flash-mode", default="speed", choices=["speed", "size"],
                   help="speed: arm_dsp convolutions read int16-widened weights (default, ~2x their flash); "
                        "size: int8 weights in flash, widened on the fly")
    b.add_argument("--input-capacity", type=int, default=4096, help="bytes of the device's input buffer")
    b.add_argument("--no-monolithic", action="store_true", help="leave out the full-depth model (no RUN mode FULL)")
    b.add_argument("--no-verify", action="store_true", help="skip the host-tier comparison with TFLite Micro")
    b.add_argument("--flash-kib", type=int, default=None, help="flash of your part, if smaller than the board's")
    b.add_argument("--ram-kib", type=int, default=None, help="RAM of your part, if smaller than the board's")
    b.set_defaults(handler=_build)
    pr = fsub.add_parser("profile", help="instructions per layer and per MAC under QEMU (mps2-an386)",
                         description="Build the selftest firmware, run it under qemu-system-arm -icount shift=0 and "
                                     "write RUN/firmware/<model>/<board>-<kernels>/profile.json: instructions per "
                                     "layer, per segment and per MAC.")
    _common(pr)
    pr.add_argument("--flash-mode", default="speed", choices=["speed", "size"],
                    help="profile the speed (default) or the size flash mode (see 'firmware build --help')")
    pr.set_defaults(handler=_profile)


def _common(p) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--board", default="mps2-an386", choices=["mps2-an386", "generic-cortex-m4"],
                   help="mps2-an386 (QEMU, default) or generic-cortex-m4 (fill in its hooks: docs/porting.md)")
    p.add_argument("--kernels", default="arm_dsp", choices=["reference", "arm_dsp"],
                   help="arm_dsp: SXTB16/SMLAD kernels (default); reference: portable C")
    p.add_argument("--model", default=None,
                   help="exported model to build (default: classifier, or the run's only bundle, e.g. one "
                        "written by 'tinyexit import')")


def default_model(run_dir: str, model: str | None) -> str:
    """See tinyexit.bundle.default_model."""
    from tinyexit.bundle import default_model as _default

    return _default(run_dir, model)


def _build(args: argparse.Namespace) -> int:
    from tinyexit.firmware_bridge.firmware.build import FirmwareConfig, build_firmware

    cfg = FirmwareConfig(board=args.board, kernels=args.kernels, app=args.app, input_capacity=args.input_capacity,
                         monolithic=not args.no_monolithic, verify=not args.no_verify,
                         flash_bytes=args.flash_kib * 1024 if args.flash_kib else None,
                         ram_bytes=args.ram_kib * 1024 if args.ram_kib else None, flash_mode=args.flash_mode,
                         mlperf_model=args.mlperf_model)
    build_firmware(args.run_dir, default_model(args.run_dir, args.model), cfg)
    return 0


def _profile(args: argparse.Namespace) -> int:
    from tinyexit.firmware_bridge.firmware.profile import profile_layers

    res = profile_layers(args.run_dir, default_model(args.run_dir, args.model), args.kernels,
                         flash_mode=args.flash_mode)
    print(f"profile: {res['instructions']} instructions for {res['macs']} MACs = "
          f"{res['instructions_per_mac']:.3f} instructions/MAC ({args.kernels}) -> {res['path']}")
    return 0
