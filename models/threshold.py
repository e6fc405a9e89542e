"""The early-exit operating point, chosen on the validation split at training time.

The rule lives here (not in the report) so the value flows forward: training
chooses it and saves it with the checkpoint and in RUN/config.json; export copies
it into the bundle with its provenance; the report only reads it.  NumPy only.
"""
from __future__ import annotations

import numpy as np

from tinyexit.exit_policy import FINE_GRID, ExitPolicy, gather_exit_logits

CONFIDENCE_FLOOR = 0.9
POLICY = "max_softmax"
SPLIT = "val"
RULE = ("lowest max-softmax threshold on a fine grid, at least 0.9, at which early exit changes no full-depth "
        "answer on val, nor at any higher grid threshold")


def choose_threshold(val_logits: np.ndarray, grid=FINE_GRID, floor: float = CONFIDENCE_FLOOR) -> float:
    """Lowest max-softmax threshold (at or above a confidence floor) at which, and at every
    higher grid threshold, early exit changes no full-depth answer on val.

    `val_logits` are the per-exit logits (E, N, C) of the validation split.  "No change"
    (zero disagreement with the last exit) is stricter than "no accuracy loss": on 350 easy
    val images a lost answer and a gained one cancel, and the test split then pays for the
    lost kind.  Requiring it at every higher threshold too stops a lucky dip from choosing it.
    """
    logits = np.asarray(val_logits)
    final = logits[-1].argmax(-1)
    chosen = grid[-1]
    for t in reversed(grid):
        exits = ExitPolicy(POLICY, (t,)).exit_index(logits)
        if t < floor or (gather_exit_logits(logits, exits).argmax(-1) != final).any():
            break
        chosen = t
    return float(chosen)


def chosen_policy(val_logits: np.ndarray) -> dict:
    """The exit policy a training run records: {"name", "params", "provenance"} (the bundle's layout)."""
    t = choose_threshold(val_logits)
    return {"name": POLICY, "params": [t],
            "provenance": {"source": "chosen at training", "split": SPLIT, "rule": RULE, "chosen_value": [t]}}
