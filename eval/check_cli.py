"""`tinyexit check RUN_DIR --baseline FILE`: the regression gate users put in CI."""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser(
        "check", help="compare a run's report.json with a baseline; non-zero exit on a regression",
        description="Compare RUN_DIR/report/report.json with a baseline JSON: accuracy per exit (absolute "
                    "tolerance), MAC counts (exact), latency ratios (relative tolerance), instruction counts on "
                    "deterministic targets (+-1 tick). Prints what moved; exits 1 on a regression.")
    p.add_argument("run_dir", help="a run directory with report/report.json ('tinyexit report RUN_DIR')")
    p.add_argument("--baseline", required=True, help="baseline JSON file (e.g. eval/baselines/demo.json)")
    p.add_argument("--update", action="store_true", help="rewrite the baseline from this run instead of checking")
    p.add_argument("--acc-tol", type=float, default=0.005, help="allowed accuracy drop, absolute (default 0.005)")
    p.add_argument("--latency-rel-tol", type=float, default=0.1,
                   help="allowed relative growth of latency ratios (default 0.1)")
    p.add_argument("--all", action="store_true", help="print every checked metric, not only those that moved")
    p.set_defaults(handler=_check)


def _check(args) -> int:
    from tinyexit.eval.check import CheckConfig, check_run, format_table

    cfg = CheckConfig(acc_tol=args.acc_tol, latency_rel_tol=args.latency_rel_tol)
    result = check_run(args.run_dir, args.baseline, cfg, update=args.update)
    print(format_table(result, all_rows=args.all))
    return 0 if result.ok or result.updated else 1
