import os
import subprocess
import sys

import pytest

from tinyexit.cli import main


def _run(capsys, *argv):
    code = main(list(argv))
    err = capsys.readouterr().err
    return code, err


def test_unknown_dataset(capsys, tmp_path):
    code, err = _run(capsys, "train", "early-exit", "--dataset", "mnist", "--out", str(tmp_path / "r"))
    assert code == 2 and "unknown dataset 'mnist'" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_missing_cifar_dir(capsys, tmp_path):
    code, err = _run(capsys, "train", "early-exit", "--dataset", "cifar10", "--data-dir", str(tmp_path / "x"),
                     "--out", str(tmp_path / "r"))
    assert code == 2 and "no such directory" in err


def test_non_empty_output_needs_force(capsys, tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    code, err = _run(capsys, "train", "early-exit", "--out", str(out))
    assert code == 2 and "not empty" in err and "--force" in err
    assert (out / "precious.txt").read_text() == "keep me"


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_output(capsys, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    code, err = _run(capsys, "train", "early-exit", "--out", str(ro / "r"))
    assert code == 2 and "cannot write" in err


def test_output_is_a_file(capsys, tmp_path):
    f = tmp_path / "file"
    f.write_text("")
    code, err = _run(capsys, "train", "early-exit", "--out", str(f))
    assert code == 2 and "not a directory" in err


def test_report_threshold_out_of_range(capsys, tmp_path):
    (tmp_path / "config.json").write_text('{"tinyexit_version": "0.1.0"}')
    code, err = _run(capsys, "report", str(tmp_path), "--threshold", "1.5")
    assert code == 2 and "threshold 1.5" in err and "[0, 1]" in err


def test_report_on_missing_run(capsys, tmp_path):
    code, err = _run(capsys, "report", str(tmp_path / "nope"))
    assert code == 2 and "no such run directory" in err


def test_console_script_help_lists_commands():
    out = subprocess.run([sys.executable, "-m", "tinyexit", "--help"], capture_output=True, text=True, check=True)
    for cmd in ("train", "report", "demo"):
        assert cmd in out.stdout
