"""Energy maths on recorded meter data (synthetic recordings in the drivers' raw formats) and spec parsing."""
import json
from pathlib import Path

import numpy as np
import pytest

from tinyexit.errors import UserError
from tinyexit.firmware_bridge.harness.energy import (BY_KIND, PROFILES, EnergyProfile, device_kind, modelled_energy_j,
                                                     profile_for)
from tinyexit.firmware_bridge.harness.power import (PPK2_RATE_HZ, PowerSpec, PowerTrace, gpio_windows, ina_power_w,
                                            parse_power_spec, ppk2_trace, swap16, timed_window_energy_j,
                                            window_energies_j)

DATA = Path(__file__).parent / "power_data"


def test_ppk2_windows_cut_at_the_gpio_edges():
    rec = np.load(DATA / "ppk2_trace.npz")
    trace = ppk2_trace(rec["current_ua"], float(rec["voltage_mv"]), rec["logic"])
    windows = gpio_windows(trace.logic)
    assert windows == [(1000, 3000), (4500, 7500), (8500, 11000)]
    energies = window_energies_j(trace.power_w, PPK2_RATE_HZ, windows)
    # 12 mA at 3.3 V for 20, 30, 25 ms; noise of 50 µA averages out to well under 0.1 %.
    for e, ms in zip(energies, (20, 30, 25)):
        assert e == pytest.approx(0.012 * 3.3 * ms / 1000, rel=1e-3)


def test_gpio_windows_edge_cases():
    assert gpio_windows(np.array([1, 1, 0, 1])) == [(0, 2), (3, 4)]
    assert gpio_windows(np.zeros(5)) == [] and gpio_windows(np.array([], dtype=bool)) == []


@pytest.mark.parametrize("chip", ["ina219", "ina226"])
def test_ina_register_words_to_power(chip):
    rec = json.loads((DATA / "ina_reads.json").read_text())[chip]
    t = np.array([r["t_s"] for r in rec["reads"]])
    p = np.array([ina_power_w(chip, swap16(r["shunt_word"]), swap16(r["bus_word"]), rec["shunt_ohm"])
                  for r in rec["reads"]])
    assert p[0] == pytest.approx(5.0 * 0.2) and p[-1] == pytest.approx(5.0 * 0.08)
    energy, mean = timed_window_energy_j(PowerTrace(t, p), 0.0, 0.05)
    assert energy == pytest.approx(1.0 * 0.049) and mean == pytest.approx(1.0)


def test_ina_datasheet_values_and_sign():
    # INA219: 0x0FA0 = 40 mV across 0.1 ohm = 400 mA; bus 0x1F40 >> 3 = 1000 x 4 mV = 4 V.
    assert ina_power_w("ina219", 0x0FA0, 0x1F40, 0.1) == pytest.approx(1.6)
    assert ina_power_w("ina219", 0xF060, 0x1F40, 0.1) == pytest.approx(-1.6)   # reverse current
    # INA226: bus 0x2580 = 9600 x 1.25 mV = 12 V; shunt 0x0FA0 = 4000 x 2.5 µV = 10 mV -> 100 mA.
    assert ina_power_w("ina226", 0x0FA0, 0x2580, 0.1) == pytest.approx(1.2)
    assert swap16(0x3412) == 0x1234


def test_too_short_a_window_is_refused():
    with pytest.raises(UserError, match="raise --repeats"):
        timed_window_energy_j(PowerTrace(np.array([0.0, 1.0]), np.array([1.0, 1.0])), 0.2, 0.4)


@pytest.mark.parametrize("spec, parsed", [
    ("ppk2:/dev/ttyACM1", PowerSpec("ppk2", port="/dev/ttyACM1")),
    ("ppk2:/dev/ttyACM1:1800:3", PowerSpec("ppk2", port="/dev/ttyACM1", voltage_mv=1800, channel=3)),
    ("ina219:1:0x40", PowerSpec("ina219", bus=1, address=0x40)),
    ("ina226:3:65:0.01", PowerSpec("ina226", bus=3, address=65, shunt_ohm=0.01)),
])
def test_power_spec_parsing(spec, parsed):
    assert parse_power_spec(spec) == parsed
    assert PowerSpec.from_dict(parsed.to_dict()) == parsed


@pytest.mark.parametrize("spec", ["ppk2", "ppk2:", "ppk2:/dev/x:9000", "ina219:1", "ina219:x:0x40", "ina219:1:0x99",
                                  "joulescope:1", "ina226:1:0x40:-1"])
def test_bad_power_specs_say_the_format(spec):
    with pytest.raises(UserError, match=r"expected ppk2:PORT\[:MV\[:CHANNEL\]\]"):
        parse_power_spec(spec)


def test_modelled_energy_profiles_are_labelled_with_their_source():
    for p in PROFILES.values():
        assert p.source and p.device_kind and (p.active_power_w or p.energy_per_instruction_j)
        assert EnergyProfile.from_dict(p.to_dict()) == p
        assert BY_KIND[p.device_kind] is p                     # one profile per device kind
    assert "not a measurement" in PROFILES["host-agent"].source
    assert "STM32F411" in PROFILES["cortex-m4"].source
    assert PROFILES["cortex-m4"].energy_per_instruction_j == pytest.approx(3.3 * 100e-6 / 1e6)   # 3.3 V x 100 uA/MHz
    assert PROFILES["cortex-m4"].active_power_w == pytest.approx(3.3e-10 * 100e6)               # the same at 100 MHz
    assert modelled_energy_j(PROFILES["raspberry-pi-4"], seconds=2e-3) == pytest.approx(5.4 * 2e-3)
    assert modelled_energy_j(PROFILES["cortex-m4"], seconds=1.0, instructions=400_000) == pytest.approx(1.32e-4)
    assert modelled_energy_j(PROFILES["host-agent"], instructions=400_000) is None   # no per-instruction figure
    assert modelled_energy_j(PROFILES["host-agent"], seconds=None) is None
    assert modelled_energy_j(None, seconds=1.0) is None
    with pytest.raises(UserError, match="must be > 0"):
        EnergyProfile("x", "host", "nothing", active_power_w=0.0)
    with pytest.raises(UserError, match="'source' is empty"):
        EnergyProfile("x", "host", " ", active_power_w=1.0)


@pytest.mark.parametrize("target, info, kind", [
    ("qemu", {}, "cortex-m4"),
    ("agent", {"device": "agent@raspberrypi aarch64"}, "host"),
    ("url", {"runtime": "generated_c", "device": "qemu-mps2-an386"}, "cortex-m4"),
    ("url", {"runtime": "tflm"}, "cortex-m4"),
    ("url", {"runtime": "litert", "board": "Raspberry Pi 4 Model B Rev 1.4"}, "raspberry-pi-4"),
    # a host name is not a board model: neither "raspberrypi" nor "aarch64" in a name picks the Pi profile
    ("url", {"runtime": "litert", "device": "agent@raspberrypi aarch64"}, "unknown"),
    ("url", {"runtime": "onnxruntime", "device": "agent@build-aarch64 aarch64"}, "unknown"),
    ("url", {"runtime": "litert", "board": "Raspberry Pi 5 Model B Rev 1.0"}, "unknown"),
])
def test_profile_is_chosen_by_device_kind_never_by_name(target, info, kind):
    assert device_kind(target, info) == kind
    profile = profile_for(kind)
    assert (profile is None) == (kind == "unknown")
    assert profile is None or profile.device_kind == kind


class ReplayMonitor:
    """Plays back the recorded PPK2 stream, one GPIO window per RUN: a stand-in for the meter, not the device."""

    name = "ppk2:replay"

    def __init__(self):
        rec = np.load(DATA / "ppk2_trace.npz")
        self.trace = ppk2_trace(rec["current_ua"][:3500], float(rec["voltage_mv"]), rec["logic"][:3500])

    def start(self):
        pass

    def stop(self):
        return self.trace


def test_measured_energy_is_labelled_measured(fixture_run):
    from tinyexit.firmware_bridge.harness.bench import BenchConfig, run_benchmark

    cfg = BenchConfig(limit=4, modes=("early_exit", "segments"), warmup=0, progress=False, power="ppk2:replay",
                      energy_repeats=10)
    summary = run_benchmark(fixture_run, ["agent"], cfg, log=lambda m: None, monitor=ReplayMonitor())
    energy = summary["energy"]
    assert energy["source"] == "measured:ppk2" and energy["meter"] == "ppk2:replay"
    # One recorded window: 12 mA x 3.3 V x 20 ms, shared by the RUN's 10 inferences.
    for mode in ("early_exit", "segment:0", "segment:2"):
        assert energy["per_mode"][mode]["energy_j"] == pytest.approx(0.012 * 3.3 * 0.020 / 10, rel=2e-3)
        assert energy["per_mode"][mode]["method"] == "1 GPIO window(s)"
    assert [e["energy_source"] for e in summary["per_exit"]] == ["measured:ppk2"] * 3
    assert summary["per_exit"][0]["energy_ratio"] == pytest.approx(1.0)  # same recorded window for every path
