"""Energy: measured values pass through, modelled values are computed from a profile and labelled."""
import pytest

from tinyexit.errors import UserError
from tinyexit.eval.energy import CORTEX_M4, HOST_CPU, EnergyProfile, label, modelled_energy, path_energy, profile_for


def test_modelled_energy_from_power_and_from_instructions():
    p = EnergyProfile("bench-psu", "lab supply reading, 2024", active_power_w=2.5, energy_per_instruction_j=1e-10)
    assert modelled_energy(0.004, "s", p) == pytest.approx(0.01)
    assert modelled_energy(2_000_000, "instructions", p) == pytest.approx(2e-4)
    assert modelled_energy(None, "s", p) is None
    assert modelled_energy(1.0, "instructions", HOST_CPU) is None   # no per-instruction figure: no guess
    with pytest.raises(UserError, match="latency unit 'cycles'"):
        modelled_energy(1.0, "cycles", p)


def test_cortex_m4_profile_is_0_33_nj_per_instruction():
    assert CORTEX_M4.energy_per_instruction_j == pytest.approx(3.3 * 100e-6 / 1e6)
    assert "STM32F411" in CORTEX_M4.source


def test_measured_energy_passes_through_as_median_and_is_labelled_measured():
    e = path_energy([3e-6, 1e-6, 2e-6], latency=1.0, unit="s", profile=HOST_CPU, meter="ppk2:/dev/ttyACM1")
    assert e["energy_j"] == 2e-6
    assert e["energy_kind"] == "measured"
    assert e["energy_source"] == "measured: ppk2:/dev/ttyACM1 (median of 3)"
    assert label(e["energy_kind"]) == "measured"


def test_modelled_energy_is_never_labelled_measured():
    e = path_energy([], latency=400_000, unit="instructions", profile=CORTEX_M4)
    assert e["energy_j"] == pytest.approx(400_000 * 3.3e-10)
    assert e["energy_kind"] == "modelled"
    assert e["energy_source"].startswith("modelled: profile 'cortex-m4' (STM32F411")
    assert "measured" not in e["energy_source"].replace("modelled", "")
    assert label(e["energy_kind"]) == label(None) == "modelled"


def test_profile_choice():
    assert profile_for({}, "instructions") is CORTEX_M4
    assert profile_for({}, "s") is HOST_CPU
    assert profile_for({"energy_profile": "cortex-m4"}, "s") is CORTEX_M4
    mine = {"name": "pi4", "source": "my USB meter", "active_power_w": 3.1}
    assert profile_for({"energy_profile": mine}, "s") == EnergyProfile("pi4", "my USB meter", 3.1)
    with pytest.raises(UserError, match="energy_profile 'nrf52' unknown"):
        profile_for({"energy_profile": "nrf52"}, "s")


def test_profile_validation():
    with pytest.raises(UserError, match="'source' is empty"):
        EnergyProfile("x", " ", active_power_w=1.0)
    with pytest.raises(UserError, match="give active_power_w or energy_per_instruction_j"):
        EnergyProfile("x", "datasheet")
    with pytest.raises(UserError, match="must be > 0"):
        EnergyProfile("x", "datasheet", active_power_w=-1.0)
    assert EnergyProfile.from_dict(CORTEX_M4.to_dict()) == CORTEX_M4
