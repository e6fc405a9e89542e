"""The firmware's C protocol code under libFuzzer, AddressSanitizer and UBSan (firmware/fuzz/fuzz_protocol.c).

The target links the real generated classifier and denoiser of the shared small test run, so the seeds
(recorded transcripts and sessions built with the Python framing layer) reach LOAD_INPUT, RUN in every
mode, GENERATE and every refusal; a 30 s fuzzing run finds no crash, no sanitizer report and no protocol
violation; a planted overflow is found and reported, so a real one would be too; and the MLPerf Tiny
DUT command parser (apps/mlperf_main.c, firmware/fuzz/fuzz_mlperf.c) gets a short run as well.
The long run is `tinyexit reliability fuzz-c --seconds 600` (`--target mlperf` for the second parser).
"""
import shutil
import subprocess

import pytest

from tinyexit.firmware_bridge.protocol import constants as pc
from tinyexit.firmware_bridge.reliability.fuzz_c import FuzzCConfig, build_fuzzer, check_clang, fuzz_c, replay
from tinyexit.firmware_bridge.reliability.fuzz_c_seeds import seed_corpus

pytestmark = pytest.mark.slow


def _clang_missing() -> str | None:
    if shutil.which("clang") is None:
        return "clang missing (make install: apt-get install -y clang libclang-rt-14-dev)"
    try:
        check_clang()
    except Exception as exc:  # libFuzzer runtime missing: same install command
        return str(exc)
    return None


if _clang_missing():
    pytest.skip(_clang_missing(), allow_module_level=True)


def _with_c(run, models):
    """`tinyexit export --formats c` on the copy: the firmware consumes export/<model>/c, it never generates it."""
    from tinyexit.export.codegen import generate_c_for_run

    for model in models:
        if not (run / "export" / model / "c" / "codegen.json").is_file():
            generate_c_for_run(run, model)
    return run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from helpers.trained_runs import copy_run, exported_run

    run = copy_run(exported_run(tmp_path_factory.getbasetemp()), tmp_path_factory.mktemp("fuzzc") / "run")
    return _with_c(run, ("classifier", "denoiser"))


@pytest.fixture(scope="module")
def fuzzer(run, tmp_path_factory):
    return build_fuzzer(run, tmp_path_factory.mktemp("fuzzc_build"))


def test_seeds_reach_every_request_path_of_both_models(run, fuzzer, tmp_path):
    seeds = seed_corpus(run, tmp_path / "seeds")
    names = sorted(p.name for p in seeds.iterdir())
    assert sum(n.startswith("transcript-") for n in names) >= 2 * 12
    assert sum(n.startswith("session-") for n in names) == 2 * 2 * 7 + 2  # both models, wire + records
    res = replay(fuzzer, seeds)
    assert res["exit_status"] == 0 and res["reports"] == [], res
    got = res["reached"]
    assert got["inputs"][0] > 0 and got["inputs"][1] > 0
    assert got["result"][0] > 0 and got["result"][1] > 0 and got["generate"] >= 2 and got["ack"] > 0
    # every frame error and every refusal but REQ_UNSUPPORTED (absent from these sessions) occurs in the seeds
    want = {n for n, c, _ in pc.ERRORS if 0x0100 < c < 0x0300} - {"REQ_UNSUPPORTED"}
    assert want <= set(got["codes"]), want - set(got["codes"])


def test_thirty_seconds_of_fuzzing_find_nothing(run, tmp_path):
    res = fuzz_c(run, tmp_path / "work", FuzzCConfig(seconds=30, coverage=False, fresh=True, progress_s=10),
                 log=print)
    assert res["ok"], (res["reports"], res["crash_files"], res["log"])
    assert res["exit_status"] == 0 and res["reports"] == [] and res["crash_files"] == []
    assert res["seconds"] >= 30 and res["executions"] > 1000 and res["new_units"] > 0
    got = res["reached"]
    assert got["result"][0] > 0 and got["result"][1] > 0 and got["generate"] > 0
    assert (tmp_path / "work" / "protocol" / "fuzz-c.json").is_file()


def test_the_protocol_against_stub_kernels_runs_the_same_requests(run, tmp_path):
    """protocol_stub: the same harness, seeds and oracle, no convolutions; every reply path is still reached."""
    res = fuzz_c(run, tmp_path / "work", FuzzCConfig(seconds=10, target="protocol_stub", coverage=False, fresh=True,
                                                     progress_s=5), log=print)
    assert res["ok"], (res["reports"], res["crash_files"], res["log"])
    assert res["exit_status"] == 0 and res["reports"] == [] and res["executions"] > 1000
    got = res["reached"]
    assert got["result"][0] > 0 and got["result"][1] > 0 and got["generate"] > 0
    assert (tmp_path / "work" / "protocol_stub" / "fuzz-c.json").is_file()


def test_a_planted_overflow_is_found_and_reported(run, tmp_path):
    """A harness build whose LOAD_INPUT copy checks the offset but not the end: fuzzing the seeds that fill the
    input buffer to 4 bytes short of its end (none of them overflows) finds the overflow within seconds."""
    exe = build_fuzzer(run, tmp_path / "planted", extra_flags=("-DTE_FUZZ_PLANTED_BUG",))
    seeds = seed_corpus(run, tmp_path / "seeds")
    (tmp_path / "start").mkdir()
    for path in seeds.glob("session-*-buffer_end-records"):
        shutil.copy(path, tmp_path / "start")
    assert replay(exe, tmp_path / "start")["exit_status"] == 0  # the seeds alone are fine
    res = subprocess.run([str(exe), "-max_total_time=90", "-seed=1", f"-artifact_prefix={tmp_path}/",
                          str(tmp_path / "start")], capture_output=True, text=True, timeout=300)
    assert res.returncode != 0
    assert "AddressSanitizer: global-buffer-overflow" in res.stderr
    crash = next(tmp_path.glob("crash-*"))
    assert replay(exe, crash)["exit_status"] != 0  # the saved input reproduces it


def test_the_mlperf_command_parser_under_the_fuzzer_too(run, tmp_path):
    res = fuzz_c(run, tmp_path / "work", FuzzCConfig(seconds=10, target="mlperf", coverage=False, fresh=True),
                 log=print)
    assert res["ok"] and res["reports"] == [] and res["crash_files"] == [], (res["reports"], res["log"])
    got = res["reached"]
    assert res["executions"] > 1000 and got["infers"] > 0 and got["commands"] > res["executions"]
