"""Energy in the report is rendered from summary.json, never recomputed: measured passes through, modelled
keeps the harness's profile name and source, an unprofiled device says so."""
from tinyexit.eval.bench_figures import apply_energy, energy_label, mode_energy

PROFILE = {"name": "cortex-m4", "device_kind": "cortex-m4",
           "source": "STM32F411 datasheet, 100 uA/MHz at 3.3 V", "active_power_w": 0.033,
           "energy_per_instruction_j": 3.3e-10}


def _out(n=2):
    return {"per_exit": [{"exit": k} for k in range(n)], "early_exit": {"samples": 3}}


def test_modelled_energy_is_taken_from_summary_rows_as_written():
    s = {"energy": {"source": "modelled", "profile": PROFILE, "device_kind": "cortex-m4", "per_mode_j": {}},
         "per_exit": [{"index": 0, "energy_j": 1.25e-4, "energy_ratio": 0.4},
                      {"index": 1, "energy_j": 3.125e-4, "energy_ratio": 1.0}],
         "early_exit": {"energy_j": 2.0e-4}}
    out = _out()
    apply_energy(out, s, 2)
    assert [(e["energy_j"], e["energy_ratio"], e["energy_kind"]) for e in out["per_exit"]] == [
        (1.25e-4, 0.4, "modelled"), (3.125e-4, 1.0, "modelled")]
    assert out["per_exit"][0]["energy_source"] == ("modelled: profile 'cortex-m4' "
                                                   "(STM32F411 datasheet, 100 uA/MHz at 3.3 V)")
    assert out["early_exit"]["energy_j"] == 2.0e-4 and out["early_exit"]["energy_kind"] == "modelled"
    assert out["energy_profile"] == PROFILE and out["energy_device_kind"] == "cortex-m4"


def test_measured_per_mode_of_an_older_summary_passes_through_with_ratio_to_full():
    energy = {"source": "measured:ppk2", "meter": "ppk2:/dev/ttyACM1",
              "per_mode": {"full": {"energy_j": 4e-3}, "segment:0": {"energy_j": 1e-3}, "segment:1": {"energy_j": 3e-3}}}
    out = _out()
    apply_energy(out, {"energy": energy}, 2)
    assert [(e["energy_j"], e["energy_ratio"]) for e in out["per_exit"]] == [(1e-3, 0.25), (3e-3, 0.75)]
    assert {e["energy_kind"] for e in out["per_exit"]} == {"measured"}
    assert out["per_exit"][0]["energy_source"] == "measured: ppk2:/dev/ttyACM1"
    assert mode_energy(energy, "segment:1") == 3e-3 and mode_energy(energy, None) is None


def test_unprofiled_device_and_missing_energy_render_as_such():
    kind, text = energy_label({"source": "none", "note": "no energy profile for a device of kind 'unknown'"})
    assert kind is None and text == "not modelled: no energy profile for a device of kind 'unknown'"
    out = _out(1)
    apply_energy(out, {}, 1)
    assert out["per_exit"][0]["energy_j"] is None and out["per_exit"][0]["energy_kind"] is None
    assert out["per_exit"][0]["energy_source"].startswith("not in summary.json")
