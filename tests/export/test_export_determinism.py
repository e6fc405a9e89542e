"""The same checkpoint exported twice gives byte-identical files (every artifact, manifests included)."""
from __future__ import annotations

import pytest

from tinyexit.export.config import ExportConfig
from tinyexit.export.exporter import export_run
from helpers.trained_runs import copy_run, exported_run


@pytest.mark.slow
def test_reexport_is_byte_identical(tmp_path_factory):
    first = exported_run(tmp_path_factory.getbasetemp())
    second = copy_run(first, tmp_path_factory.mktemp("again") / "run")
    before = {p.relative_to(first): p.read_bytes() for p in (first / "export").rglob("*") if p.is_file()}
    export_run(second, ExportConfig(formats=("onnx", "tflite", "tflm", "c"), calibration_samples=200),
               progress=lambda m: None)
    after = {p.relative_to(second): p.read_bytes() for p in (second / "export").rglob("*") if p.is_file()}
    assert set(after) == set(before)
    timing = {p for p in before if p.name == "export_log.json"}   # wall-clock seconds: the only varying file
    assert len(timing) == 2
    differing = sorted(str(p) for p in before if p not in timing and before[p] != after[p])
    assert differing == []
    assert any(p.suffix == ".onnx" for p in before) and any(p.suffix == ".tflite" for p in before)
