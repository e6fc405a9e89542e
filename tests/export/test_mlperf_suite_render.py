"""The bench-suite table shows the bit-exactness of both flash modes (size mode was once left unchecked)."""
from tinyexit.export.mlperf_suite import render


def _mode(ipm, flash, exact, samples):
    return {"instructions": 2_500_000, "macs": 2_656_768, "instructions_per_mac": ipm, "flash_bytes": flash,
            "arena_bytes": 16_128, "tflm_arena_total": 24_272, "tflm_arena_head": 16_000, "ram_bytes": 28_280,
            "bit_exact_vs_tflm": exact, "host_tier_samples": samples,
            "per_layer": [{"name": "seg0/0:CONV_2D", "macs": 320_000, "instructions": 300_310,
                           "instructions_per_mac": 0.9385}]}


def test_the_table_gives_each_flash_modes_bit_exactness():
    row = {"model": "kws01", "title": "DS-CNN", "macs": 2_656_768, "target_instructions_per_mac": 1.0,
           "meets_ipm": True, "arena_vs_tflm_total": 0.664, "arena_vs_tflm_head": 1.008, "size_weights_ratio": 1.002,
           "modes": {"speed": _mode(0.9406, 91_220, True, 64), "size": _mode(1.5, 61_032, False, 32)}}
    text = render({"rows": [row]})
    line = next(line for line in text.splitlines() if line.startswith("| kws01"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[3] == "0.941 (1.0, met)"
    assert cells[9] == "True (64 inputs)"
    assert cells[10] == "1.500, 61,032, 1.002x, False (32 inputs)"
    assert "| seg0/0:CONV_2D | 320,000 | 300,310 | 0.94 |" in text
