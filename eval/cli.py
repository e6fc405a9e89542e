"""`tinyexit report` (and later `tinyexit check`)."""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("report", help="write RUN_DIR/report/{report.md, report.json, *.png}",
                       description="Write a Markdown + JSON + PNG report from whatever the run directory holds.")
    p.add_argument("run_dir", help="a run directory made by 'tinyexit train' or 'tinyexit demo'")
    p.set_defaults(handler=_report)


def _report(args) -> int:
    from tinyexit.eval.report import write_report

    out = write_report(args.run_dir)
    print(f"report written to {out / 'report.md'}")
    return 0
