"""Power monitors for measured energy: Nordic PPK2 and INA219/INA226, both optional.

`parse_power_spec("ppk2:/dev/ttyACM1")` or `"ina219:1:0x40[:0.1]"` returns a
monitor with `start()` / `stop() -> PowerTrace`.  The maths that turns a trace
into energy (GPIO-cut windows, averages over a timed window, INA register
scaling) is plain NumPy and is what the tests exercise, on recorded data; the
drivers themselves need the hardware and import their packages lazily
(`ppk2-api`, `smbus2`).
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np

from tinyexit.errors import UserError

PPK2_RATE_HZ = 100_000


@dataclass(frozen=True)
class PowerTrace:
    """Samples of one measurement: time (s, from start), power (W) and optionally one logic channel."""

    t_s: np.ndarray
    power_w: np.ndarray
    logic: np.ndarray | None = None

    def mean_power_w(self) -> float:
        return float(np.mean(self.power_w)) if len(self.power_w) else float("nan")


def gpio_windows(logic: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) sample ranges where the logic channel is high (one per inference window)."""
    high = np.asarray(logic, dtype=bool).astype(np.int8)
    edges = np.diff(np.concatenate([[0], high, [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


def window_energies_j(power_w: np.ndarray, rate_hz: float, windows: list[tuple[int, int]]) -> list[float]:
    """Energy of each window of a uniformly sampled trace: sum of power x sample period."""
    p = np.asarray(power_w, dtype=np.float64)
    return [float(p[a:b].sum() / rate_hz) for a, b in windows]


def timed_window_energy_j(trace: PowerTrace, t0: float, t1: float) -> tuple[float, float]:
    """(energy J, mean power W) over [t0, t1) of a non-uniformly sampled trace, by the trapezoid rule."""
    t, p = np.asarray(trace.t_s, np.float64), np.asarray(trace.power_w, np.float64)
    inside = (t >= t0) & (t < t1)
    if inside.sum() < 2:
        raise UserError(f"power trace has {int(inside.sum())} samples in the {t1 - t0:.3f} s window; "
                        "raise --repeats so a measured window spans many samples")
    ts, ps = t[inside], p[inside]
    energy = float(np.sum((ps[1:] + ps[:-1]) * np.diff(ts)) / 2)
    return energy, energy / float(ts[-1] - ts[0])


# --- INA219 / INA226 register scaling (datasheet LSBs) ---------------------------------------------
INA_SPECS = {
    # chip: (shunt voltage LSB in V, bus voltage LSB in V, bus register shift)
    "ina219": (10e-6, 4e-3, 3),     # bus voltage in bits 15..3
    "ina226": (2.5e-6, 1.25e-3, 0),
}
INA_REG_SHUNT, INA_REG_BUS = 0x01, 0x02


def swap16(word: int) -> int:
    """SMBus read_word_data returns the I2C big-endian register low byte first."""
    return ((word & 0xFF) << 8) | (word >> 8)


def ina_power_w(chip: str, shunt_reg: int, bus_reg: int, shunt_ohm: float) -> float:
    """Power from raw (big-endian, already swapped) shunt and bus voltage registers."""
    shunt_lsb, bus_lsb, shift = INA_SPECS[chip]
    shunt = shunt_reg - 0x10000 if shunt_reg & 0x8000 else shunt_reg  # two's complement
    v_shunt = shunt * shunt_lsb
    v_bus = (bus_reg >> shift) * bus_lsb
    return v_bus * v_shunt / shunt_ohm


class InaMonitor:
    """INA219/INA226 on an I2C bus (a Raspberry Pi's /dev/i2c-N), polled in a thread."""

    def __init__(self, chip: str, bus: int, address: int, shunt_ohm: float = 0.1):
        try:
            from smbus2 import SMBus
        except ImportError:
            raise UserError(f"--power {chip}: needs the smbus2 package (pip install smbus2) on the machine "
                            "wired to the sensor") from None
        self.name = f"{chip}:{bus}:0x{address:02x}"
        self.chip, self.address, self.shunt_ohm = chip, address, shunt_ohm
        try:
            self._bus = SMBus(bus)
        except OSError as exc:
            raise UserError(f"--power {self.name}: cannot open /dev/i2c-{bus} ({exc.strerror}); enable I2C "
                            "(raspi-config) and check the bus number") from None
        self._samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _poll(self) -> None:
        t0 = time.monotonic()
        while not self._stop.is_set():
            shunt = swap16(self._bus.read_word_data(self.address, INA_REG_SHUNT))
            bus = swap16(self._bus.read_word_data(self.address, INA_REG_BUS))
            self._samples.append((time.monotonic() - t0, ina_power_w(self.chip, shunt, bus, self.shunt_ohm)))

    def start(self) -> None:
        self._samples, self._stop = [], threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def stop(self) -> PowerTrace:
        self._stop.set()
        self._thread.join()
        arr = np.asarray(self._samples, dtype=np.float64).reshape(-1, 2)
        return PowerTrace(arr[:, 0], arr[:, 1])


class Ppk2Monitor:
    """Nordic PPK2 in source-meter mode; logic input `channel` is wired to the device's energy GPIO."""

    def __init__(self, port: str, voltage_mv: int = 3300, channel: int = 0):
        try:
            from ppk2_api.ppk2_api import PPK2_API
        except ImportError:
            raise UserError("--power ppk2: needs the ppk2-api package (pip install 'tinyexit[power]')") from None
        self.name = f"ppk2:{port}"
        self.voltage_mv, self.channel = voltage_mv, channel
        try:
            self._ppk = PPK2_API(port)
            self._ppk.get_modifiers()
            self._ppk.use_source_meter()
            self._ppk.set_source_voltage(voltage_mv)
            self._ppk.toggle_DUT_power("ON")
        except Exception as exc:  # the library raises bare Exceptions and serial errors alike
            raise UserError(f"--power {self.name}: PPK2 did not respond ({exc}); check the port") from None
        self._chunks: list[bytes] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _poll(self) -> None:
        while not self._stop.is_set():
            data = self._ppk.get_data()
            if data:
                self._chunks.append(data)
            time.sleep(0.001)

    def start(self) -> None:
        self._chunks, self._stop = [], threading.Event()
        self._ppk.start_measuring()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def stop(self) -> PowerTrace:
        self._stop.set()
        self._thread.join()
        self._ppk.stop_measuring()
        got = self._ppk.get_samples(b"".join(self._chunks))
        samples, logic = (got[0], self._ppk.digital_channels(got[1])[self.channel]) if isinstance(got, tuple) \
            else (got, None)
        return ppk2_trace(np.asarray(samples), self.voltage_mv, None if logic is None else np.asarray(logic))


def ppk2_trace(current_ua: np.ndarray, voltage_mv: float, logic: np.ndarray | None) -> PowerTrace:
    """A PPK2 sample stream (µA at 100 kS/s, source voltage) as a power trace."""
    p = np.asarray(current_ua, np.float64) * 1e-6 * (voltage_mv / 1000.0)
    return PowerTrace(np.arange(len(p)) / PPK2_RATE_HZ, p, logic)


@dataclass(frozen=True)
class PowerSpec:
    kind: str                # "ppk2", "ina219" or "ina226"
    port: str = ""           # ppk2 serial port
    voltage_mv: int = 3300   # ppk2 source voltage
    channel: int = 0         # ppk2 logic input wired to the device's energy GPIO
    bus: int = 1             # INA I2C bus number
    address: int = 0x40
    shunt_ohm: float = 0.1

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: dict) -> "PowerSpec":
        return cls(**d)


def parse_power_spec(spec: str) -> PowerSpec:
    """'ppk2:PORT[:MV[:CHANNEL]]' | 'ina219:BUS:ADDR[:SHUNT_OHM]' | 'ina226:BUS:ADDR[:SHUNT_OHM]'."""
    kind, _, rest = spec.partition(":")
    parts = rest.split(":") if rest else []
    try:
        if kind == "ppk2" and 1 <= len(parts) <= 3 and parts[0]:
            out = PowerSpec("ppk2", port=parts[0], voltage_mv=int(parts[1]) if len(parts) > 1 else 3300,
                            channel=int(parts[2]) if len(parts) > 2 else 0)
            if 800 <= out.voltage_mv <= 5000 and 0 <= out.channel <= 7:
                return out
        if kind in INA_SPECS and len(parts) in (2, 3):
            out = PowerSpec(kind, bus=int(parts[0]), address=int(parts[1], 0),
                            shunt_ohm=float(parts[2]) if len(parts) > 2 else 0.1)
            if 0 <= out.address <= 0x7F and out.shunt_ohm > 0:
                return out
    except ValueError:
        pass
    raise UserError(f"--power {spec}: expected ppk2:PORT[:MV[:CHANNEL]] (800-5000 mV, channel 0-7) or "
                    "ina219|ina226:BUS:ADDR[:SHUNT_OHM], e.g. ppk2:/dev/ttyACM1 or ina219:1:0x40")


def open_monitor(spec: PowerSpec):
    """Connect to the meter a spec names (needs the hardware and its optional package)."""
    if spec.kind == "ppk2":
        return Ppk2Monitor(spec.port, spec.voltage_mv, spec.channel)
    return InaMonitor(spec.kind, spec.bus, spec.address, spec.shunt_ohm)
