"""The pytest plugin: harmless when unused, a fixture that fails a user's test on a regression."""
import json

from tinyexit.eval.check import check_run

pytest_plugins = ["pytester"]

REPORT = {"classifier": {"accuracy": {"per_exit": [0.9, 0.97]}, "macs": {"per_exit_cumulative": [20000, 60000]}}}

USER_TESTS = """
def test_from_options(tinyexit_check):
    result = tinyexit_check()
    assert result.ok and len(result.rows) == 4

def test_explicit_arguments(tinyexit_check):
    tinyexit_check(r"{run}", r"{baseline}", acc_tol=0.001)
"""


def _run(tmp_path, report):
    run = tmp_path / "run"
    (run / "report").mkdir(parents=True, exist_ok=True)
    (run / "report" / "report.json").write_text(json.dumps(report))
    return run


def test_plugin_is_harmless_when_unused(pytester):
    pytester.makepyfile("def test_plain():\n    assert 1 + 1 == 2\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    out = result.stdout.str()
    assert "plugins: tinyexit-" in out and "warning" not in out.lower() and "error" not in out.lower()
    assert "--tinyexit-baseline=FILE" in pytester.runpytest("--help").stdout.str()


def test_fixture_passes_on_an_unchanged_run(pytester, tmp_path):
    run = _run(tmp_path, REPORT)
    base = tmp_path / "base.json"
    check_run(run, base, update=True)
    pytester.makepyfile(USER_TESTS.format(run=run, baseline=base))
    result = pytester.runpytest("-p", "no:cacheprovider", f"--tinyexit-run={run}", f"--tinyexit-baseline={base}")
    result.assert_outcomes(passed=2)


def test_fixture_fails_the_test_with_the_table_on_a_regression(pytester, tmp_path):
    run = _run(tmp_path, REPORT)
    base = tmp_path / "base.json"
    check_run(run, base, update=True)
    _run(tmp_path, {"classifier": {"accuracy": {"per_exit": [0.9, 0.95]},
                                   "macs": {"per_exit_cumulative": [20000, 60001]}}})
    pytester.makepyfile(USER_TESTS.format(run=run, baseline=base))
    result = pytester.runpytest("-p", "no:cacheprovider", f"--tinyexit-run={run}", f"--tinyexit-baseline={base}",
                                "--tinyexit-acc-tol=0.05")
    result.assert_outcomes(failed=2)              # the option loosens accuracy; the MAC change still fails
    out = result.stdout.str()
    assert "| classifier.macs.per_exit_cumulative[1] | macs | 60,000 | 60,001 | +1 | exact | REGRESSION |" in out
    assert "| classifier.accuracy.per_exit[1] | accuracy | 0.97 | 0.95 | -0.02 | ±0.05 abs | moved |" in out
    assert "check_run(" not in out               # no traceback into tinyexit


def test_fixture_without_run_or_bad_baseline_fails_with_one_line(pytester, tmp_path):
    run = _run(tmp_path, REPORT)
    pytester.makepyfile("""
def test_no_options(tinyexit_check):
    tinyexit_check()

def test_missing_baseline(tinyexit_check):
    tinyexit_check(r"%s", r"%s")
""" % (run, tmp_path / "absent.json"))
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*tinyexit_check: no run directory or baseline; pass them to the fixture*",
                                 "*tinyexit_check: *absent.json: missing; create it with*"])
