"""The denoiser's on-device sampler from the host: request a generation, and its reference twin.

`generate_on_device(link, seed)` sends the firmware's GENERATE request (a
tinyexit firmware extension, type 0x06, payload seed u32) and returns the final
+1/-1 image with the device's tick counts: the whole T-step reverse process
ran on the device, only 64 bytes crossed the link.  `sample_reference`
computes the same chain on the host in the same float32 arithmetic with the
same xorshift32 draws (firmware/core/te_sampler.c), the network being any
int8 runner of the per-segment files (TensorFlow Lite Micro in the tests).
"""
from __future__ import annotations

import struct
from typing import Callable

import numpy as np

from tinyexit.errors import UserError

MSG_GENERATE = 0x06
MODE_GENERATE = 4
F32 = np.float32


class XorShift32:
    def __init__(self, seed: int):
        self.state = seed & 0xFFFFFFFF or 0x9E3779B9

    def uniform(self) -> np.float32:
        x = self.state
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self.state = x
        return F32(x >> 8) * F32(1.0 / 16777216.0)


def _quantize(v: float, scale: float, zp: int) -> int:
    r = F32(v) / F32(scale)
    q = int(np.sign(r) * np.floor(np.abs(r) + F32(0.5))) + zp
    return min(max(q, -128), 127)


def sample_reference(den: dict, in_q: tuple[float, int], run_exit: Callable[[int, np.ndarray], np.ndarray],
                     exit_q: list[tuple[float, int]], seed: int) -> np.ndarray:
    """The device's generation, step for step: run_exit(k, x int8 (1,H,W,2)) -> exit k's int8 logits."""
    T = int(den["T"])
    mix, lg = den["mixing"], den.get("logits") or den["prior_exit"]
    marginal = np.asarray(lg["marginal_logits"], F32)
    obs = np.asarray(lg["observation_log_odds"], F32)
    plane = np.asarray(den["timestep_encoding"]["values"], F32)
    a_neg, a_pos, b_neg, b_pos = (np.asarray(mix[k], F32) for k in ("A_y_neg", "A_y_pos", "B_y_neg", "B_y_pos"))
    schedule = (den.get("exit_schedule") or {}).get("per_step") or [len(exit_q) - 1] * T
    residual = bool(den.get("prior_residual"))
    rng = XorShift32(seed)
    n = len(marginal)
    side = int(round(n ** 0.5))
    y = np.array([1 if rng.uniform() < F32(0.5) else -1 for _ in range(n)], np.int8)
    q_pos, q_neg = _quantize(1.0, *in_q), _quantize(-1.0, *in_q)
    for t in range(T, 0, -1):
        i, k = t - 1, int(schedule[t - 1])
        logits = None
        if k >= 0:
            x = np.stack([np.where(y > 0, q_pos, q_neg), np.full(n, _quantize(plane[i], *in_q))], axis=-1)
            logits = np.asarray(run_exit(k, x.astype(np.int8).reshape(1, side, side, 2))).reshape(-1)
        new = np.empty(n, np.int8)
        for j in range(n):
            yf = F32(1.0) if y[j] > 0 else F32(-1.0)
            prior = F32(marginal[j] + F32(yf * obs[i]))
            if logits is None:
                z = prior
            else:
                scale, zp = exit_q[k]
                z = F32(F32(int(logits[j]) - zp) * F32(scale))
                z = F32(z + (prior if residual else F32(0.0)))
            p = F32(F32(1.0) / F32(F32(1.0) + np.exp(F32(-z))))
            a, b = (a_pos[i], b_pos[i]) if y[j] > 0 else (a_neg[i], b_neg[i])
            prob = F32(F32(p * a) + F32(F32(F32(1.0) - p) * b))
            new[j] = 1 if rng.uniform() < prob else -1
        y = new
    return y


def generate_on_device(link, seed: int, seq: int = 1, timeout: float = 30.0):
    """(image int8 +1/-1, network ticks, sampling ticks, tick_hz) from a firmware built for the denoiser."""
    import time

    from tinyexit.firmware_bridge.protocol import messages as m
    from tinyexit.firmware_bridge.protocol import constants as pc
    from tinyexit.firmware_bridge.protocol.framing import Frame, FrameDecoder, encode_frame

    link.write(encode_frame(Frame(MSG_GENERATE, seq, struct.pack("<I", seed & 0xFFFFFFFF)), lead=True))
    dec, deadline = FrameDecoder(), time.monotonic() + timeout
    while time.monotonic() < deadline:
        for ev in dec.feed(link.read(0.2)):
            if not isinstance(ev, Frame) or ev.seq != seq:
                continue
            if ev.type == pc.MSG_ERROR:
                raise UserError(f"device refused GENERATE: {m.Error.unpack(ev.payload).describe()}")
            res = m.Result.unpack(ev.payload)
            if res.mode != MODE_GENERATE:
                raise UserError(f"device answered GENERATE with a RESULT of mode {res.mode}")
            return np.array(res.logits, np.int8), res.ticks[0], res.decision_ticks, res.tick_hz
    raise UserError(f"no answer to GENERATE within {timeout:.0f} s")


# --- generation measured on the emulated board (exact instruction counts) ----------------------------------------
def _step_layout(per_step: list[int]) -> list[str]:
    """The sampler's timed intervals in order (te_sampler.c): t = T..1, a network interval when the step's exit
    is >= 0, then the sampling arithmetic."""
    out = []
    for t in range(len(per_step), 0, -1):
        if int(per_step[t - 1]) >= 0:
            out.append("net")
        out.append("math")
    return out


def split_generation(marks: list[dict], per_step: list[int]) -> dict | None:
    """Exact instructions of one GENERATE (network, arithmetic) from the plugin's marks up to its reply."""
    from tinyexit.firmware_bridge.firmware import plugin as fp

    layout = _step_layout(per_step)
    need = 2 * len(layout)
    if len(marks) < need:
        return None
    tail = marks[len(marks) - need:]
    net = math = 0
    for what, i in zip(layout, range(0, need, 2)):
        d = fp.difference(tail[i], tail[i + 1])["total"]
        if what == "net":
            net += d
        else:
            math += d
    return {"network_instructions": net, "sampling_instructions": math}


def measure_generation(bundle_dir, seeds: list[int], per_step: list[int] | None = None, work=None,
                       log=print) -> dict:
    """Generate one image per seed on the QEMU firmware; per_step overrides the bundle's exit schedule (a
    firmware is built from a copy of the bundle with that schedule).  Exact instructions per sample."""
    import json
    import shutil
    from pathlib import Path

    from tinyexit.bundle import load_bundle
    from tinyexit.firmware_bridge.firmware import plugin as fp
    from tinyexit.firmware_bridge.harness.link import SerialLink
    from tinyexit.firmware_bridge.harness.qemu import firmware_for, start_qemu

    bundle = load_bundle(Path(bundle_dir))
    den = bundle.manifest.get("denoiser")
    if not den:
        raise UserError(f"{bundle.dir}: not a denoiser bundle (manifest has no 'denoiser')")
    schedule = list(per_step if per_step is not None else (den.get("exit_schedule") or {}).get("per_step")
                    or [len(bundle.segments) - 1] * int(den["T"]))
    src = bundle.dir
    if per_step is not None:  # a copy of the bundle whose firmware samples with this schedule
        src = Path(work) / "bundle"
        if src.exists():
            shutil.rmtree(src)
        shutil.copytree(bundle.dir, src, ignore=shutil.ignore_patterns("firmware"))
        man = json.loads((src / "manifest.json").read_text())
        man["denoiser"].setdefault("exit_schedule", {})["per_step"] = [int(k) for k in schedule]
        (src / "manifest.json").write_text(json.dumps(man, indent=1))
    elf = firmware_for(src, bundle.model, log=lambda msg: None)
    url, handle = start_qemu(elf, elf.parent / "qemu-generate.log")
    rows = []
    try:
        link = SerialLink(url, 115200)
        reader = fp.MarkReader(handle.counts_path) if handle.counts_path else None
        try:
            for i, seed in enumerate(seeds):
                image, net_ticks, math_ticks, hz = generate_on_device(link, seed, seq=i + 1, timeout=120.0)
                row = {"seed": int(seed), "image": image.tolist(), "network_ticks": int(net_ticks),
                       "sampling_ticks": int(math_ticks), "tick_hz": int(hz)}
                exact = split_generation(reader.take(), schedule) if reader else None
                if exact:
                    row.update(exact)
                rows.append(row)
        finally:
            link.close()
    finally:
        handle.close()
    return {"per_step": schedule, "samples": rows, "elf": str(elf)}


def generation_study(run_dir, seeds: list[int], model: str = "denoiser", log=print) -> dict:
    """The denoiser generating on QEMU at full depth and with its exit schedule: measured instructions per
    sample beside the analytic MAC saving -> RUN/bench/qemu-denoiser/generation.json."""
    from pathlib import Path

    from tinyexit.bundle import load_bundle
    from tinyexit.firmware_bridge.harness.energy import PROFILES
    from tinyexit.firmware_bridge.harness.qemu import LABEL
    from tinyexit.rundir import write_json

    run = Path(run_dir)
    bundle = load_bundle(run / "export" / model)
    den = bundle.manifest["denoiser"]
    T, last = int(den["T"]), len(bundle.segments) - 1
    seg_macs = [int(s.macs) for s in bundle.segments]
    out_dir = run / "bench" / "qemu-denoiser"
    res = {}
    for name, per_step in (("full_depth", [last] * T), ("schedule", None)):
        log(f"denoiser: generating {len(seeds)} samples on QEMU ({name.replace('_', ' ')})")
        r = measure_generation(bundle.dir, seeds, per_step, work=out_dir / f"generate-{name}", log=log)
        r["macs_per_sample"] = sum(sum(seg_macs[:k + 1]) for k in r["per_step"] if k >= 0)
        exact = [s for s in r["samples"] if "network_instructions" in s]
        r["instructions_per_sample"] = (sum(s["network_instructions"] + s["sampling_instructions"] for s in exact)
                                        / len(exact)) if exact else None
        r["network_instructions_per_sample"] = (sum(s["network_instructions"] for s in exact) / len(exact)
                                                if exact else None)
        res[name] = r
    epi = PROFILES["cortex-m4"].energy_per_instruction_j
    full, sched = res["full_depth"], res["schedule"]
    mac_saving = 1.0 - sched["macs_per_sample"] / full["macs_per_sample"]
    inst_saving = (1.0 - sched["instructions_per_sample"] / full["instructions_per_sample"]
                   if full["instructions_per_sample"] and sched["instructions_per_sample"] is not None else None)
    net_saving = (1.0 - sched["network_instructions_per_sample"] / full["network_instructions_per_sample"]
                  if full["network_instructions_per_sample"] else None)
    out = {"device": "qemu", "simulated_or_real": LABEL, "seeds": list(seeds), "T": T,
           "full_depth": full, "schedule": sched,
           "analytic_mac_saving": mac_saving, "measured_instruction_saving": inst_saving,
           "measured_network_instruction_saving": net_saving,
           "saving_gap_points": None if inst_saving is None else 100 * (inst_saving - mac_saving),
           "energy_per_sample_j": {k: (v["instructions_per_sample"] * epi if v["instructions_per_sample"] else None)
                                   for k, v in res.items()},
           "energy_source": "modelled (profile 'cortex-m4': instructions x energy per instruction)",
           "unit": "instructions"}
    write_json(out_dir / "generation.json", out)
    return out
