"""The host's int8 reference for a benchmark: the same artifact run on this machine.

For every sample: the int8 logits of every exit (segments chained), of the
monolithic model, and the exit the policy takes, decided exactly as the agent
does (decide.ExitDecider on the int8 logits, with the policy parameters rounded
to float32 as they travel on the wire).

Kernels: the host runs the kernel set the device reports at the end of its
INFO runtime name ("... optimized" or "... reference").  TFLite's reference
kernels give the same int8 results on every CPU, so a reference-kernel device
must match to the bit (tolerance 0 LSB).  Optimized kernels round differently
per architecture (and from the reference kernels), so an optimized device is
compared within TOLERANCE_LSB on every logit, and a sample whose exit or
top-1 could flip within that tolerance is counted as borderline, not as an
agreement or a failure.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinyexit.firmware_bridge.agent.runtime import make_backend
from tinyexit.bundle import Bundle
from tinyexit.firmware_bridge.protocol.decide import ExitDecider
from tinyexit.exit_policy import ExitPolicy


# Largest |device - host| int8 logit difference accepted per kernel set.  Optimized kernels: x86_64 vs its own
# reference kernels differ by at most 1 LSB on the demo classifier, aarch64 vs x86_64 by up to 2 (issue 16).
TOLERANCE_LSB = {"reference": 0, "optimized": 2}
KERNEL_SETS = tuple(TOLERANCE_LSB)


@dataclass(frozen=True)
class HostReference:
    runtime: str
    exit_logits: np.ndarray          # (E, N, C) int8
    full_logits: np.ndarray | None   # (N, C) int8
    early_exit: np.ndarray | None    # (N,) exit index per sample
    all_exits_logits: np.ndarray | None = None  # (N, C) int8, last exit of the all-exits monolithic model
    kernels: str = "optimized"
    tolerance_lsb: int = TOLERANCE_LSB["optimized"]
    fragile: np.ndarray | None = None  # (E, N) bool: the exit decision flips within the tolerance

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


def reference_spec(runtime_name: str, runtime: str) -> str:
    """"runtime:kernels" for the host reference of a device whose INFO runtime name is `runtime_name`."""
    words = str(runtime_name).split()
    kernels = words[-1] if words and words[-1] in KERNEL_SETS else None
    if runtime == "tflm":
        return runtime
    if kernels is None:   # an agent older than the kernels option ran the optimized kernels
        kernels = "optimized"
    return f"{runtime}:{kernels}"


def _split_spec(spec: str) -> tuple[str, str]:
    runtime, _, kernels = spec.partition(":")
    return runtime, kernels or ("reference" if runtime == "tflm" else "optimized")


def compute_reference(art: Bundle, x: np.ndarray, policy: ExitPolicy | None, runtime: str = "litert",
                      full: bool = True, tolerance_lsb: int | None = None) -> HostReference:
    """`runtime` is a runtime name, optionally with the kernel set: "litert:reference".  The tolerance is
    the kernel set's (TOLERANCE_LSB) unless given (a device on other kernels than the host's)."""
    name, kernels = _split_spec(runtime)
    backend = make_backend(art, name, threads=1, full=full, kernels="optimized" if name == "tflm" else kernels)
    tol = TOLERANCE_LSB[kernels] if tolerance_lsb is None else tolerance_lsb
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
    early = fragile = None
    if policy is not None:
        decider = ExitDecider(wire_policy(policy), [(s.outputs["logits"].scale, s.outputs["logits"].zero_point)
                                                    for s in art.segments])
        early = np.array([_decide(decider, [exit_logits[k, i].tolist() for k in range(e)]) for i in range(n)],
                         dtype=np.int64)
        fragile = np.array([[_fragile(decider, k, exit_logits[k, i], tol) for i in range(n)]
                            for k in range(e - 1)] + [[False] * n], dtype=bool).reshape(e, n)
    return HostReference(runtime, exit_logits, full_logits, early, all_logits, kernels, tol, fragile)


def _fragile(decider: ExitDecider, k: int, logits: np.ndarray, tol: int) -> bool:
    """Whether exit k's decision changes when the logits move by at most `tol` LSB: the two extreme moves
    (top logit down and the rest up, or the reverse) bound every confidence the policies compute."""
    if tol == 0:
        return False
    v = logits.astype(np.int64)
    top = int(np.argmax(v))
    if decider.policy.name == "patience":  # it counts agreeing top-1s: fragile where the top-1 can change
        second = np.sort(v)[-2] if len(v) > 1 else v[top]
        return int(v[top] - second) <= 2 * tol
    verdicts = set()
    for sign in (-1, 1):
        moved = v - sign * tol
        moved[top] = v[top] + sign * tol
        decider.reset()
        verdicts.add(bool(decider.passes(k, np.clip(moved, -128, 127).tolist())))
    return len(verdicts) > 1


def compare(ref: HostReference, mode: str, sample: int, device_exit: int, logits: np.ndarray) -> dict:
    """The host-reference fields of one result record.

    host_logit_lsb: max |device - host| int8 logit at the exit the DEVICE left at (same exit, so the number
    measures the kernels, not the exit decision); host_borderline: an exit or top-1 disagreement there is
    within the tolerance (the host's decision at the first exit where they part flips within it, or its
    two best logits are within 2 x tolerance of each other)."""
    host_exit = ref.exit_for(mode, sample)
    host_logits = ref.logits_for(mode, sample, host_exit)
    if host_logits is None:
        return {}
    same = ref.logits_for(mode, sample, device_exit) if mode == "early_exit" else host_logits
    dev = np.asarray(logits, np.int64).reshape(-1)
    lsb = int(np.max(np.abs(same.astype(np.int64).reshape(-1) - dev))) if same is not None else None
    top2 = np.sort(host_logits.astype(np.int64).reshape(-1))[-2:]
    near_top = len(top2) == 2 and int(top2[1] - top2[0]) <= 2 * ref.tolerance_lsb
    parted = min(device_exit, host_exit)
    near_exit = (mode == "early_exit" and ref.fragile is not None and parted < len(ref.fragile)
                 and bool(ref.fragile[parted, sample]))
    return {"host_exit": host_exit, "host_top1": int(np.argmax(host_logits)),
            "host_logits_equal": bool(np.array_equal(host_logits.astype(np.int64).reshape(-1), dev)),
            "host_logit_lsb": lsb, "host_borderline": bool(near_top or near_exit),
            "host_kernels": ref.kernels, "tolerance_lsb": ref.tolerance_lsb}


def _decide(decider: ExitDecider, per_exit: list[list[int]]) -> int:
    decider.reset()
    for k, logits in enumerate(per_exit[:-1]):
        if decider.passes(k, logits):
            return k
    return len(per_exit) - 1
