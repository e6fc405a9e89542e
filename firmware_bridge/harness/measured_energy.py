"""Measured energy per exit path: one long RUN (many back-to-back inferences) per mode inside a meter window.

With a logic channel wired to the device's energy GPIO (PPK2), the window is cut
at the GPIO edges; otherwise (INA219/INA226) energy per inference = mean power
over the RUN x device-measured time per inference.  Idle power is not
subtracted: the figure is what the device draws while inferring.
"""
from __future__ import annotations

from tinyexit.firmware_bridge.harness.power import PPK2_RATE_HZ, gpio_windows, parse_power_spec, window_energies_j


def measure_energy(worker, session, modes: list[str]) -> dict:
    cfg = worker.ctx.cfg
    spec = parse_power_spec(cfg.power)
    monitor = worker.ctx.monitor
    worker._load(session, [worker.samples[0]])
    runs = cfg.energy_repeats
    per_mode = {}
    for mode in modes:
        monitor.start()
        res = session.run(worker._request(mode, 0, runs), expected_s=0.01)
        trace = monitor.stop()
        device_s = (sum(res.ticks) + res.decision_ticks) / res.tick_hz / runs
        windows = gpio_windows(trace.logic) if trace.logic is not None else []
        if windows:
            energy = sum(window_energies_j(trace.power_w, PPK2_RATE_HZ, windows)) / runs
            method = f"{len(windows)} GPIO window(s)"
        else:
            energy = trace.mean_power_w() * device_s
            method = "mean power over the RUN x device time per inference"
        per_mode[mode] = {"energy_j": energy, "mean_power_w": trace.mean_power_w(), "device_s": device_s,
                          "runs": runs, "samples": int(len(trace.power_w)), "method": method}
    return {"source": f"measured:{spec.kind}", "meter": monitor.name, "spec": spec.to_dict(), "per_mode": per_mode}
