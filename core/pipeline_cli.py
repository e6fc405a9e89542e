"""`tinyexit demo`: the main job (registered here so the pipeline stays a thin composition)."""


def register(sub) -> None:
    p = sub.add_parser("demo", help="the main job: train, export, benchmark on the default target, report",
                       description="Run the whole flow on digits into --out: train the early-exit classifier and "
                                   "the denoiser, export int8 artifacts, benchmark on the default target, report.")
    p.add_argument("--out", default="runs/demo", help="run directory to create (default: runs/demo)")
    p.add_argument("--epochs", type=int, default=None, help="override classifier training epochs (quick runs)")
    p.add_argument("--denoiser-epochs", type=int, default=None, help="override denoiser training epochs")
    p.add_argument("--target", default=None,
                   help="benchmark target: qemu | agent | a pyserial URL (default: qemu when the Arm toolchain "
                        "and qemu-system-arm are installed, else the host agent)")
    p.add_argument("--force", action="store_true", help="allow writing into a non-empty run directory")
    p.set_defaults(handler=_demo)


def _demo(args) -> int:
    from tinyexit.pipeline import DemoConfig, run_demo

    run_demo(args.out, DemoConfig(epochs=args.epochs, denoiser_epochs=args.denoiser_epochs, target=args.target,
                                  force=args.force))
    return 0
