"""The one energy model: modelled energy = a named, sourced profile x device-measured cost.

A profile states which kind of device it applies to, its figures with their
units, and where each figure comes from.  Energy per inference is

    instructions x energy_per_instruction_j   (a target that counts instructions: QEMU -icount)
    seconds      x active_power_w             (a target timed by its own clock)

This is an estimate from a stated assumption, never a measurement: summary.json
labels it "modelled" with the profile's name, and the report renders that figure
without recomputing it.  Measured energy comes only from a power monitor
(power.py, measured_energy.py) and is labelled "measured:<meter>".

The profile is chosen by the device's *kind*, which comes from what the target
is (tinyexit started QEMU or the host agent) or what the device reports about
itself (the firmware's runtime id, a board model string), never from matching
words in a host name.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from tinyexit.errors import UserError

# Device kinds (what a profile applies to).
CORTEX_M4, HOST, RASPBERRY_PI_4, UNKNOWN = "cortex-m4", "host", "raspberry-pi-4", "unknown"
FIRMWARE_RUNTIMES = ("tflm", "generated_c")        # runtimes only tinyexit's Cortex-M4 firmware reports
# Board models as a device reports them (Linux: /proc/device-tree/model, the revision suffix dropped).
BOARD_MODELS = {"Raspberry Pi 4 Model B": RASPBERRY_PI_4}


@dataclass(frozen=True)
class EnergyProfile:
    """A device kind's power figures and their provenance; at least one figure is required:
    `active_power_w` (W) converts device seconds, `energy_per_instruction_j` (J/instruction)
    converts instruction counts."""
    name: str
    device_kind: str
    source: str
    active_power_w: float | None = None
    energy_per_instruction_j: float | None = None

    def __post_init__(self):
        if not self.source.strip():
            raise UserError(f"energy profile '{self.name}': 'source' is empty; say where the figure comes from")
        figures = [v for v in (self.active_power_w, self.energy_per_instruction_j) if v is not None]
        if not figures:
            raise UserError(f"energy profile '{self.name}': give active_power_w or energy_per_instruction_j")
        if any(not v > 0 for v in figures):
            raise UserError(f"energy profile '{self.name}': power/energy figures must be > 0")

    def to_dict(self) -> dict:
        return {"name": self.name, "device_kind": self.device_kind, "source": self.source,
                "active_power_w": self.active_power_w, "energy_per_instruction_j": self.energy_per_instruction_j,
                "units": {"active_power_w": "W", "energy_per_instruction_j": "J per instruction"}}

    @classmethod
    def from_dict(cls, d: dict) -> "EnergyProfile":
        try:
            return cls(d["name"], d.get("device_kind", UNKNOWN), d["source"], d.get("active_power_w"),
                       d.get("energy_per_instruction_j"))
        except (KeyError, TypeError) as exc:
            raise UserError(f"energy profile {d!r}: {exc}; expected name, source and a power figure") from None


PROFILES = {p.name: p for p in (
    # 3.3 V x 100 uA/MHz = 0.33 nJ per cycle; QEMU counts instructions, taken as one cycle each (CPI 1),
    # which a real M4 exceeds on loads and branches - so per instruction this is a lower bound.
    EnergyProfile(
        "cortex-m4", CORTEX_M4,
        "STM32F411 (Cortex-M4F) datasheet run-mode figure of 100 uA/MHz at VDD 3.3 V -> 0.33 nJ per cycle, "
        "one cycle per instruction assumed; 0.033 W is the same figure at 100 MHz",
        active_power_w=0.033, energy_per_instruction_j=3.3e-10),
    EnergyProfile(
        "host-agent", HOST,
        "assumption, not a measurement: one busy x86 server core taken as 15 W (a 120 W package over 8 cores); "
        "the machine running the host agent was not metered, so its energy figures are illustrative only",
        active_power_w=15.0),
    EnergyProfile(
        "raspberry-pi-4", RASPBERRY_PI_4,
        "whole-board power of a Raspberry Pi 4 under high CPU load, 5.4 W at the USB supply "
        "(USB power meter, chipwired.com/raspberry-pi-power-use); an upper bound for one busy core",
        active_power_w=5.4),
)}
BY_KIND = {p.device_kind: p for p in PROFILES.values()}


def device_kind(target_kind: str, info: dict | None = None) -> str:
    """What a device is, from facts rather than names: QEMU and the host agent are started by
    tinyexit; a device behind a URL is a Cortex-M4 when it runs tinyexit's firmware (its runtime
    id), a Raspberry Pi 4 only when it reports that board model; anything else is unknown."""
    info = info or {}
    if target_kind == "qemu":
        return CORTEX_M4                      # QEMU mps2-an386 emulates a Cortex-M4F
    if target_kind == "agent":
        return HOST
    if info.get("runtime") in FIRMWARE_RUNTIMES:
        return CORTEX_M4
    board = re.sub(r"\s+Rev\s+\S+$", "", str(info.get("board") or "").strip())
    return BOARD_MODELS.get(board, UNKNOWN)


def profile_for(kind: str) -> EnergyProfile | None:
    """The profile of a device kind; None for an unknown device (its energy is not modelled)."""
    return BY_KIND.get(kind)


def modelled_energy_j(profile: EnergyProfile | None, seconds: float | None = None,
                      instructions: float | None = None) -> float | None:
    """Joules of one inference: per instruction when the target counts instructions, else per second."""
    if profile is None:
        return None
    if instructions is not None and profile.energy_per_instruction_j is not None:
        return float(instructions) * profile.energy_per_instruction_j
    if instructions is None and seconds is not None and profile.active_power_w is not None:
        return float(seconds) * profile.active_power_w
    return None


def basis(profile: EnergyProfile | None, counts_instructions: bool) -> str | None:
    """What the modelled figure multiplies: 'instructions' or 'seconds' (None: not modelled)."""
    if profile is None:
        return None
    if counts_instructions:
        return "instructions" if profile.energy_per_instruction_j is not None else None
    return "seconds" if profile.active_power_w is not None else None
