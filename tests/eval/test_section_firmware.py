import json

from tinyexit.eval import section_firmware


def _write(run, model, app, flash):
    d = run / "firmware" / model / f"mps2-an386-arm_dsp{'-selftest' if app == 'selftest' else ''}"
    d.mkdir(parents=True)
    (d / "firmware.json").write_text(json.dumps({
        "model": model, "app": app, "board": "mps2-an386", "kernels": "arm_dsp", "flash_bytes": flash,
        "ram_bytes": 11496, "peak_arena_bytes": 3584, "tflm_arena_bytes": 6624, "bit_exact_vs_tflm": True,
        "arena_vs_tflm": 0.5411, "flash": {"code": 100, "weights": flash - 100}, "tflm_arena": {"sum_total": 18096}}))


def test_firmware_section_reports_benchmark_builds_only(tmp_path):
    assert section_firmware.build(tmp_path, tmp_path) is None
    _write(tmp_path, "classifier", "firmware", 271100)
    _write(tmp_path, "classifier", "selftest", 93328)
    _write(tmp_path, "denoiser", "firmware", 94352)
    s = section_firmware.build(tmp_path, tmp_path)
    assert s.key == "firmware"
    assert {k: s.data[k] for k in ("board", "flash_bytes", "ram_bytes", "peak_arena_bytes", "tflm_arena_bytes",
                                   "bit_exact_vs_tflm")} == {
        "board": "mps2-an386", "flash_bytes": 271100, "ram_bytes": 11496, "peak_arena_bytes": 3584,
        "tflm_arena_bytes": 6624, "bit_exact_vs_tflm": True}
    assert [b["model"] for b in s.data["builds"]] == ["classifier", "denoiser"]
    assert "271,100" in s.markdown and "93,328" not in s.markdown
