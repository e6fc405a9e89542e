"""Exit policies: per-sample rules that decide at which exit an input leaves.

NumPy only (the device agent imports this without torch).  Every policy has the
same interface: `exit_index(logits)` takes the logits of every exit for a batch
(E x N x C) and returns, per sample, the first exit whose rule passes; the last
exit is always taken.  A device evaluates the same rule incrementally with
`passes(k, history)`, where history holds the logits of exits 0..k of one sample.

Policy ids (shared with the serial protocol and the firmware):
  0 max_softmax  exit when max softmax(logits_k) >= threshold        (params: [threshold])
  1 entropy      exit when entropy(softmax)/ln(C) <= threshold        (params: [threshold], normalized to [0, 1])
  2 patience     exit when argmax is unchanged for p consecutive exits (params: [p])
  3 calibrated   exit when max softmax(logits_k) >= thresholds[k]     (params: per-exit thresholds)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinyexit.errors import UserError

POLICY_IDS = {"max_softmax": 0, "entropy": 1, "patience": 2, "calibrated": 3}
# The fine grid of max-softmax thresholds that training (the operating point) and the report's
# calibrated policies search on val: one grid, so both pick from the same values.
FINE_GRID = tuple(np.round(np.concatenate([np.arange(0.5, 0.95, 0.025), np.arange(0.95, 0.999, 0.005),
                                            [0.999, 0.9995, 0.9999]]), 5))


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def max_softmax(logits: np.ndarray) -> np.ndarray:
    return softmax(logits).max(axis=-1)


def normalized_entropy(logits: np.ndarray) -> np.ndarray:
    p = softmax(logits)
    h = -(p * np.log(np.clip(p, 1e-300, None))).sum(axis=-1)
    return h / np.log(p.shape[-1])


@dataclass(frozen=True)
class ExitPolicy:
    name: str = "max_softmax"
    params: tuple[float, ...] = (0.9,)

    def __post_init__(self):
        object.__setattr__(self, "params", tuple(float(p) for p in self.params))
        if self.name not in POLICY_IDS:
            raise UserError(f"exit policy '{self.name}': unknown; choose one of {', '.join(POLICY_IDS)}")
        if not self.params:
            raise UserError(f"exit policy '{self.name}': needs at least one parameter")
        if self.name in ("max_softmax", "entropy", "calibrated"):
            for p in self.params:
                if not 0.0 <= p <= 1.0:
                    raise UserError(f"threshold {p:g} for policy '{self.name}' is out of range; use a value in [0, 1]")
        if self.name == "patience" and (self.params[0] < 1 or self.params[0] != int(self.params[0])):
            raise UserError(f"patience {self.params[0]:g}: must be a whole number >= 1")

    @property
    def policy_id(self) -> int:
        return POLICY_IDS[self.name]

    def to_dict(self) -> dict:
        return {"name": self.name, "params": list(self.params)}

    @classmethod
    def from_dict(cls, d: dict) -> "ExitPolicy":
        return cls(d["name"], tuple(d["params"]))

    def passes(self, k: int, history: list[np.ndarray]) -> bool:
        """Device-side rule for one sample: may it leave at exit k given logits of exits 0..k?"""
        return bool(self._passes(k, np.asarray(history)[:, None, :])[0])

    def exit_index(self, logits: np.ndarray) -> np.ndarray:
        """First passing exit per sample for logits of shape (E, N, C); the last exit always passes."""
        logits = np.asarray(logits)
        n_exits, n = logits.shape[:2]
        chosen = np.full(n, n_exits - 1, dtype=np.int64)
        undecided = np.ones(n, dtype=bool)
        for k in range(n_exits - 1):
            ok = self._passes(k, logits[:k + 1]) & undecided
            chosen[ok] = k
            undecided &= ~ok
        return chosen

    def _passes(self, k: int, history: np.ndarray) -> np.ndarray:
        cur = history[k]
        if self.name == "max_softmax":
            return max_softmax(cur) >= self.params[0]
        if self.name == "entropy":
            return normalized_entropy(cur) <= self.params[0]
        if self.name == "calibrated":
            t = self.params[k] if k < len(self.params) else self.params[-1]
            return max_softmax(cur) >= t
        p = int(self.params[0])  # patience
        if k + 1 < p:
            return np.zeros(cur.shape[0], dtype=bool)
        tops = history[k + 1 - p:k + 1].argmax(axis=-1)
        return (tops == tops[-1]).all(axis=0)


def gather_exit_logits(logits: np.ndarray, exits: np.ndarray) -> np.ndarray:
    """Logits of the exit each sample took: (E, N, C), (N,) -> (N, C)."""
    return np.asarray(logits)[exits, np.arange(len(exits))]
