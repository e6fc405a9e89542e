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
