"""Fixtures of the core tests: a genuine exported bundle, built once per session the way
tests/firmware_bridge/conftest.py builds it (TensorFlow in the test process only)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_FB_CONFTEST = Path(__file__).resolve().parents[1] / "firmware_bridge" / "conftest.py"


def _build_artifact(run_dir: Path) -> Path:
    spec = importlib.util.spec_from_file_location("tinyexit_tests_fb_conftest", _FB_CONFTEST)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.build_artifact(run_dir)


@pytest.fixture(scope="session")
def bundle_template(tmp_path_factory) -> Path:
    """RUN/export/classifier of a freshly exported fixture run."""
    run = _build_artifact(tmp_path_factory.mktemp("core_fixture_run"))
    return run / "export" / "classifier"
