"""Energy per inference: measured when a meter recorded it, otherwise modelled.

Measured energy is passed through untouched (the bench wrote `energy_j` per
result, cut from the meter's trace by the device's GPIO marker).  Without a
meter, energy is *modelled* from a target profile: active power x time, or
energy per instruction x instructions.  Every figure carries `energy_kind`
("measured" | "modelled") and `energy_source` naming the meter or the profile
and where the profile's number comes from; modelled energy is never labelled
measured.
"""
from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass

from tinyexit.errors import UserError


@dataclass(frozen=True)
class EnergyProfile:
    """A target's power figure and its provenance.  At least one figure is required:
    `active_power_w` converts seconds, `energy_per_instruction_j` converts instructions."""
    name: str
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
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "EnergyProfile":
        try:
            return cls(**{k: d[k] for k in ("name", "source", "active_power_w", "energy_per_instruction_j") if k in d})
        except TypeError as exc:
            raise UserError(f"energy profile {d!r}: {exc}; expected name, source and a power figure") from None


# 3.3 V x 100 uA/MHz = 0.33 nJ per cycle; QEMU counts instructions, taken as one cycle each (CPI 1),
# which a real M4 exceeds on loads and branches - so this is a lower bound.
CORTEX_M4 = EnergyProfile(
    name="cortex-m4",
    source="STM32F411 (Cortex-M4F) datasheet run-mode figure of ~100 uA/MHz at VDD 3.3 V "
           "-> 0.33 nJ per cycle, one cycle per instruction assumed",
    active_power_w=0.033,                  # the same figure at 100 MHz
    energy_per_instruction_j=3.3e-10)

HOST_CPU = EnergyProfile(
    name="host-cpu",
    source="assumption, not a measurement: ~10 W for one busy x86 core running the host agent; "
           "attach a meter (--power) for real figures",
    active_power_w=10.0)

PROFILES = {p.name: p for p in (CORTEX_M4, HOST_CPU)}


def profile_for(summary: dict, latency_unit: str) -> EnergyProfile:
    """The bench's own profile (summary.json `energy_profile`: a name or a dict) wins;
    otherwise the Cortex-M4 profile for instruction counts and the host-CPU one for time."""
    given = summary.get("energy_profile")
    if isinstance(given, dict):
        return EnergyProfile.from_dict(given)
    if isinstance(given, str):
        if given not in PROFILES:
            raise UserError(f"summary.json: energy_profile '{given}' unknown; use one of {', '.join(PROFILES)} "
                            "or a dict with name, source and active_power_w / energy_per_instruction_j")
        return PROFILES[given]
    return CORTEX_M4 if latency_unit == "instructions" else HOST_CPU


def modelled_energy(latency: float | None, unit: str, profile: EnergyProfile) -> float | None:
    """Joules for one inference of `latency` in `unit` ("s" or "instructions")."""
    if latency is None:
        return None
    if unit == "instructions":
        if profile.energy_per_instruction_j is None:
            return None
        return float(latency) * profile.energy_per_instruction_j
    if unit == "s":
        return None if profile.active_power_w is None else float(latency) * profile.active_power_w
    raise UserError(f"latency unit '{unit}': cannot model energy; expected 's' or 'instructions'")


def path_energy(measured_j: list[float], latency: float | None, unit: str, profile: EnergyProfile,
                meter: str | None = None) -> dict:
    """Energy of one exit path: the median of measured values if any, else modelled."""
    if measured_j:
        n = f" (median of {len(measured_j)})" if len(measured_j) > 1 else ""
        return {"energy_j": float(statistics.median(measured_j)), "energy_kind": "measured",
                "energy_source": f"measured: {meter or 'power meter'}{n}"}
    value = modelled_energy(latency, unit, profile)
    return {"energy_j": value, "energy_kind": "modelled",
            "energy_source": f"modelled: profile '{profile.name}' ({profile.source})"}


def label(kind: str | None) -> str:
    """Table label; anything not explicitly measured reads as modelled."""
    return "measured" if kind == "measured" else "modelled"
