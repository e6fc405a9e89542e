from tinyexit.eval.headline import headline


def test_headline_lists_what_the_run_has_with_labels():
    assert headline({}) == ""
    data = {"classifier": {"accuracy": {"baseline": 0.9821, "early_exit": 0.9843},
                           "early_exit": {"threshold": 0.96, "mac_ratio": 0.365}},
            "bench": {"qemu": {"early_exit": {"latency_ratio": 0.499, "mac_ratio": 0.365},
                               "latency_unit": "instructions", "simulated_or_real": "simulated: QEMU",
                               "instructions_per_mac": 1.469}}}
    md = headline(data)
    assert "98.21 %" in md and "98.43 % / 0.365" in md and "0.499 vs 0.365" in md and "1.47" in md
    assert "measured (instructions; simulated: QEMU)" in md and "denoiser" not in md
