"""`tinyexit demo`: the main job (registered here so the pipeline stays a thin composition)."""


def register(sub) -> None:
    p = sub.add_parser("demo", help="the main job: train, export, benchmark on the default target, report",
                       description="Run the whole flow on digits into --out: train the early-exit classifier and "
                                   "the denoiser, export int8 artifacts, benchmark on the default target, report.")
    p.add_argument("--out", default="runs/demo", help="run directory to create (default: runs/demo)")
    p.add_argument("--epochs", type=int, default=None, help="override classifier training epochs (quick runs)")
    p.add_argument("--force", action="store_true", help="allow writing into a non-empty run directory")
    p.set_defaults(handler=_demo)


def _demo(args) -> int:
    from tinyexit.pipeline import DemoConfig, run_demo

    run_demo(args.out, DemoConfig(epochs=args.epochs, force=args.force))
    return 0
