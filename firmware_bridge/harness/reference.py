"""The host's int8 reference for a benchmark: the same artifact run on this machine.

For every sample: the int8 logits of every exit (segments chained), of the
monolithic model, and the exit the policy takes, decided exactly as the agent
does (decide.ExitDecider on the int8 logits, with the policy parameters rounded
to float32 as they travel on the wire).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinyexit.firmware_bridge.agent.runtime import make_backend
from tinyexit.bundle import Bundle
from tinyexit.firmware_bridge.protocol.decide import ExitDecider
from tinyexit.exit_policy import ExitPolicy


@dataclass(frozen=True)
class HostReference:
    runtime: str
    exit_logits: np.ndarray          # (E, N, C) int8
    full_logits: np.ndarray | None   # (N, C) int8
    early_exit: np.ndarray | None    # (N,) exit index per sample
    all_exits_logits: np.ndarray | None = None  # (N, C) int8, last exit of the all-exits monolithic model

    def logits_for(self, mode: str, sample: int, exit_k: int) -> np.ndarray | None:
        if mode == "full":
            return None if self.full_logits is None else self.full_logits[sample]
        if mode == "full:all_exits":
            return None if self.all_exits_logits is None else self.all_exits_logits[sample]
        return self.exit_logits[exit_k, sample]

    def exit_for(self, mode: str, sample: int) -> int:
        if mode == "early_exit":
            return int(self.early_exit[sample])
        if mode.startswith("segment:"):
            return int(mode.split(":")[1])
        return self.exit_logits.shape[0] - 1


def wire_policy(policy: ExitPolicy) -> ExitPolicy:
    """The policy as a device receives it: parameters rounded to float32."""
    return ExitPolicy(policy.name, tuple(float(np.float32(p)) for p in policy.params))


def compute_reference(art: Bundle, x: np.ndarray, policy: ExitPolicy | None, runtime: str = "litert",
                      full: bool = True) -> HostReference:
    backend = make_backend(art, runtime, threads=1, full=full)
    n, e = len(x), art.n_segments
    exit_logits = np.zeros((e, n, art.num_classes), np.int8)
    for i in range(n):
        h = x[i][None]
        for k in range(e):
            logits, h = backend.segment(k, h)
            exit_logits[k, i] = logits.reshape(-1)
    full_logits = all_logits = None
    if full and backend.has_full:
        full_logits = np.stack([backend.full(x[i][None]).reshape(-1) for i in range(n)]).astype(np.int8)
    if full and getattr(backend, "has_all_exits", False):
        all_logits = np.stack([backend.full(x[i][None], 1).reshape(-1) for i in range(n)]).astype(np.int8)
    early = None
    if policy is not None:
        decider = ExitDecider(wire_policy(policy), [(s.outputs["logits"].scale, s.outputs["logits"].zero_point)
                                                    for s in art.segments])
        early = np.array([_decide(decider, [exit_logits[k, i].tolist() for k in range(e)]) for i in range(n)],
                         dtype=np.int64)
    return HostReference(runtime, exit_logits, full_logits, early, all_logits)


def _decide(decider: ExitDecider, per_exit: list[list[int]]) -> int:
    decider.reset()
    for k, logits in enumerate(per_exit[:-1]):
        if decider.passes(k, logits):
            return k
    return len(per_exit) - 1
