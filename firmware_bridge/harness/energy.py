"""Modelled energy: device time x an active-power profile, labelled "modelled" wherever it appears.

A profile is an active power in watts and the source of that number.  Energy
per inference = power x device-measured latency.  This is an estimate from a
stated assumption, never a measurement; measured energy comes only from a power
monitor (power.py) and is labelled "measured:<meter>".
"""
from __future__ import annotations

from dataclasses import dataclass

from tinyexit.errors import UserError


@dataclass(frozen=True)
class EnergyProfile:
    name: str
    active_power_w: float
    source: str

    def __post_init__(self):
        if not self.active_power_w > 0:
            raise UserError(f"energy profile '{self.name}': active power {self.active_power_w} W must be > 0")

    def to_dict(self) -> dict:
        return {"name": self.name, "active_power_w": self.active_power_w, "source": self.source}

    @classmethod
    def from_dict(cls, d: dict) -> "EnergyProfile":
        return cls(d["name"], float(d["active_power_w"]), d["source"])


PROFILES = {
    "host-agent": EnergyProfile(
        "host-agent", 15.0,
        "assumption, not a measurement: one busy x86 server core taken as 15 W (a 120 W package over 8 cores); "
        "the machine running the host agent was not metered, so its energy figures are illustrative only"),
    "raspberry-pi-4": EnergyProfile(
        "raspberry-pi-4", 5.4,
        "whole-board power of a Raspberry Pi 4 under high CPU load, 5.4 W at the USB supply "
        "(USB power meter, chipwired.com/raspberry-pi-power-use); an upper bound for one busy core"),
    "cortex-m4": EnergyProfile(
        "cortex-m4", 0.1,
        "assumption, not a measurement: ~30 mA at 3.3 V for a Cortex-M4F near 100 MHz running from flash; "
        "replace it with the run-mode current in your board's datasheet"),
}


def profile_for(target_kind: str, device: str = "", runtime: str = "") -> EnergyProfile:
    """The profile a target's energy is modelled with, chosen from what the target says it is."""
    if target_kind == "agent":
        return PROFILES["host-agent"]
    if target_kind == "qemu" or runtime in ("tflm", "generated_c"):
        return PROFILES["cortex-m4"]
    if "raspberrypi" in device.lower() or "aarch64" in device.lower():
        return PROFILES["raspberry-pi-4"]
    return PROFILES["host-agent"]


def modelled_energy_j(latency_s: float | None, profile: EnergyProfile) -> float | None:
    return None if latency_s is None else latency_s * profile.active_power_w
