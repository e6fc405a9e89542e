"""`tinyexit report`."""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("report", help="write RUN_DIR/report/{report.md, report.json, *.png}",
                       description="Write a Markdown + JSON + PNG report from whatever the run directory holds.")
    p.add_argument("run_dir", help="a run directory made by 'tinyexit train' or 'tinyexit demo'")
    p.add_argument("--threshold", type=float, default=None,
                   help="what-if: compute the early-exit figures at this max-softmax threshold instead of the run's "
                        "policy (labelled as a what-if in report.json; does not change the export)")
    p.set_defaults(handler=_report)


def _report(args) -> int:
    from tinyexit.eval.report import write_report
    from tinyexit.exit_policy import ExitPolicy
    from tinyexit.rundir import require_run_dir, update_config

    run = require_run_dir(args.run_dir)
    if args.threshold is not None:
        ExitPolicy("max_softmax", (args.threshold,))  # validates the range
        update_config(run, "report", {"threshold": args.threshold})
    out = write_report(run)
    print(f"report written to {out / 'report.md'}")
    return 0
