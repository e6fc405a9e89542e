"""Regenerate the power-meter recordings beside this file (deterministic; see README.md).

No meter was available while writing tinyexit, so these are synthetic recordings
in the drivers' raw formats, built from stated currents and voltages so the
expected energies are known exactly:

ppk2_trace.npz   100 kS/s PPK2 source-meter stream at 3300 mV: current in µA and logic
                 channel 0 (the device's energy GPIO).  Idle 1500 µA, three inference
                 windows at 12000 µA of 2000, 3000 and 2500 samples (20, 30, 25 ms),
                 seeded Gaussian noise of 50 µA.
ina_reads.json   raw SMBus read_word_data() results (low byte first, as SMBus returns the
                 big-endian registers) for an INA219 and an INA226 with a 0.1 ohm shunt,
                 with timestamps: 5.00 V bus, 200 mA for 50 ms then 80 mA.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def ppk2() -> dict:
    rng = np.random.default_rng(7)
    n = 12000
    logic = np.zeros(n, dtype=np.uint8)
    for start, length in ((1000, 2000), (4500, 3000), (8500, 2500)):
        logic[start:start + length] = 1
    current = np.where(logic == 1, 12000.0, 1500.0) + rng.normal(0, 50, n)
    return {"current_ua": current.astype(np.float64), "logic": logic, "voltage_mv": np.array(3300)}


def _swap(word: int) -> int:
    return ((word & 0xFF) << 8) | (word >> 8)


def ina() -> dict:
    out = {}
    for chip, shunt_lsb, bus_lsb, shift in (("ina219", 10e-6, 4e-3, 3), ("ina226", 2.5e-6, 1.25e-3, 0)):
        reads = []
        for i in range(100):
            t = i * 1e-3
            amps = 0.2 if t < 0.05 else 0.08
            shunt = round(amps * 0.1 / shunt_lsb) & 0xFFFF
            bus = round(5.0 / bus_lsb) << shift
            reads.append({"t_s": round(t, 6), "shunt_word": _swap(shunt), "bus_word": _swap(bus)})
        out[chip] = {"shunt_ohm": 0.1, "reads": reads}
    return out


def main() -> None:
    np.savez(HERE / "ppk2_trace.npz", **ppk2())
    (HERE / "ina_reads.json").write_text(json.dumps(ina(), indent=1) + "\n")
    print(f"wrote {HERE}/ppk2_trace.npz and ina_reads.json")


if __name__ == "__main__":
    main()
