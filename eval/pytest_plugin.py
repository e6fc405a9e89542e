"""pytest plugin: regression checks on a tinyexit run from a user's test suite.

Loaded by every pytest run in an environment where tinyexit is installed, so it
only adds options and a fixture; tinyexit's checker is imported when a test
uses the fixture.

    # test_model_regression.py  (pytest --tinyexit-run RUN --tinyexit-baseline FILE)
    def test_no_regression(tinyexit_check):
        tinyexit_check()                       # fails the test with the table of what moved

    def test_explicit(tinyexit_check):
        result = tinyexit_check("runs/demo", "baselines/demo.json", acc_tol=0.01)
        assert result.ok
"""
from __future__ import annotations

import pytest


def pytest_addoption(parser) -> None:
    group = parser.getgroup("tinyexit", "tinyexit regression checks")
    group.addoption("--tinyexit-run", default=None, metavar="RUN_DIR",
                    help="run directory checked by the tinyexit_check fixture")
    group.addoption("--tinyexit-baseline", default=None, metavar="FILE",
                    help="baseline JSON used by the tinyexit_check fixture")
    group.addoption("--tinyexit-acc-tol", type=float, default=0.005, help="allowed accuracy drop (absolute)")
    group.addoption("--tinyexit-latency-rel-tol", type=float, default=0.1,
                    help="allowed relative growth of latency ratios")


@pytest.fixture
def tinyexit_check(request):
    """A function `check(run_dir=None, baseline=None, acc_tol=None, latency_rel_tol=None)` that
    compares the run with the baseline, fails the test on a regression (with the table of what
    moved) and otherwise returns the CheckResult.  Arguments default to the --tinyexit-* options."""
    opt = request.config.getoption

    def check(run_dir=None, baseline=None, acc_tol=None, latency_rel_tol=None):
        from tinyexit.errors import UserError
        from tinyexit.eval.check import CheckConfig, check_run, format_table

        run_dir = run_dir or opt("--tinyexit-run")
        baseline = baseline or opt("--tinyexit-baseline")
        if not run_dir or not baseline:
            pytest.fail("tinyexit_check: no run directory or baseline; pass them to the fixture or use "
                        "--tinyexit-run RUN_DIR --tinyexit-baseline FILE", pytrace=False)
        try:
            cfg = CheckConfig(acc_tol=opt("--tinyexit-acc-tol") if acc_tol is None else acc_tol,
                              latency_rel_tol=(opt("--tinyexit-latency-rel-tol") if latency_rel_tol is None
                                               else latency_rel_tol))
            result = check_run(run_dir, baseline, cfg)
        except UserError as exc:
            pytest.fail(f"tinyexit_check: {exc}", pytrace=False)
        if not result.ok:
            pytest.fail("tinyexit regression against " + str(baseline) + ":\n" + format_table(result), pytrace=False)
        return result

    return check
