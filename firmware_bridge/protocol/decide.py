"""The exit test a device runs after each segment, on int8 logits, in plain Python.

Same rules as `tinyexit.exit_policy.ExitPolicy.passes` (dequantize with
the segment's scale and zero point, softmax, compare), written for ten-odd
numbers at a time: NumPy's per-call overhead made the test cost more than a
segment on the host agent, which would be charged to every early exit.  The
agent and the host reference both use this, so device and host decide
identically; it agrees with `ExitPolicy.passes` except where a probability
lies within rounding (~1e-15) of the threshold (tests/firmware_bridge check it).
"""
from __future__ import annotations

import math

from tinyexit.exit_policy import ExitPolicy


class ExitDecider:
    """Incremental exit test for one sample: call `reset()`, then `passes(k, q_logits)` for k = 0, 1, ..."""

    def __init__(self, policy: ExitPolicy, logit_quant: list[tuple[float, int]]):
        self.policy = policy
        self._quant = logit_quant          # (scale, zero_point) of each exit's logits
        self._tops: list[int] = []

    def reset(self) -> None:
        self._tops = []

    def passes(self, k: int, q_logits) -> bool:
        scale, zp = self._quant[k]
        z = [(q - zp) * scale for q in q_logits]
        name, params = self.policy.name, self.policy.params
        if name == "patience":
            self._tops.append(z.index(max(z)))
            p = int(params[0])
            return len(self._tops) >= p and len(set(self._tops[-p:])) == 1
        m = max(z)
        e = [math.exp(v - m) for v in z]
        total = sum(e)
        if name == "entropy":
            h = -sum((v / total) * math.log(max(v / total, 1e-300)) for v in e)
            return h / math.log(len(z)) <= params[0]
        threshold = params[k] if name == "calibrated" and k < len(params) else params[-1]
        return 1.0 / total >= threshold  # the largest probability is exp(0) / total
