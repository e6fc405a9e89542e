"""The small trained run for `fuzz-c` without RUN_DIR: built by the repository's test helper.

Training a model is not part of the product; the helper lives in the source checkout's
tests/helpers/trained_runs.py.  From an installed tinyexit (no tests/ folder) the user is
asked for a RUN_DIR instead.
"""
from __future__ import annotations

import sys
from pathlib import Path

from tinyexit.errors import UserError

TESTS = Path(__file__).resolve().parents[2] / "tests"


def exported_run(base: Path) -> Path:
    if not (TESTS / "helpers" / "trained_runs.py").is_file():
        raise UserError("fuzz-c: no RUN_DIR given and no tinyexit source checkout (tests/helpers) to build the "
                        "small test run; pass an exported RUN_DIR (made by 'tinyexit train' + 'tinyexit export')")
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))
    from helpers.trained_runs import exported_run as build  # trains: a developer command, never on a device

    return build(base)
