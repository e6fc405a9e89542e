"""Constant arrays of generated models, each distinct content defined once.

The segmented model and the one-subgraph variants of one export (full depth,
all exits) hold the same weight tensors.  A `ConstPool` shared by their
generation keys every array by its C type, layout branch and values: the
first model that needs an array defines it in its own .c file (a global,
model-prefixed symbol) and every later user declares it `extern`, so flash
holds each distinct array once.  The segmented model is generated first and
is linked into every firmware, so the one-subgraph files only ever point
into it, never the other way round.

Arrays may belong to one preprocessor branch of the generated code: the
arm_dsp kernels' packed layouts ("packed", see codegen_pack.py) or the plain
TFLite layouts they replace ("plain"); "" is both.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from tinyexit.errors import InternalError, UserError

CTYPES = {"int8_t": (1, -128, 127), "int16_t": (2, -(1 << 15), (1 << 15) - 1),
          "int32_t": (4, -(1 << 31), (1 << 31) - 1)}
LAYOUTS = ("", "packed", "plain")
PACKED_MACRO = "TE_ARM_DSP_LAYOUT"   # 1 when the arm_dsp kernels are compiled (generated .c defines it)


@dataclass
class ConstArray:
    symbol: str
    ctype: str
    values: np.ndarray        # int64, padding included
    owner: str                # the model whose file defines it
    layout: str
    per_line: int
    users: list[str] = field(default_factory=list)

    @property
    def nbytes(self) -> int:
        return max(self.values.size, 1) * CTYPES[self.ctype][0]

    def definition(self) -> str:
        rows = [", ".join(str(int(v)) for v in self.values[i:i + self.per_line])
                for i in range(0, self.values.size, self.per_line)]
        body = ",\n    ".join(rows) if rows else "0"
        return f"const {self.ctype} {self.symbol}[{max(self.values.size, 1)}] = {{\n    {body}\n}};\n"

    def declaration(self) -> str:
        return f"extern const {self.ctype} {self.symbol}[{max(self.values.size, 1)}];\n"


class ConstPool:
    """Content-addressed constant arrays shared by the models generated with it."""

    def __init__(self):
        self._by_key: dict[tuple, ConstArray] = {}
        self._symbols: dict[str, set[str]] = {}   # symbol -> layout branches defining it

    def array(self, model: str, symbol: str, ctype: str, values, pad: int = 0, layout: str = "",
              per_line: int = 16) -> str:
        """Register `values` (+ `pad` zeros) for `model`; returns the symbol to reference."""
        if ctype not in CTYPES or layout not in LAYOUTS:
            raise InternalError(f"const array {symbol}: ctype {ctype!r} / layout {layout!r}")
        vals = np.asarray(values).ravel().astype(np.int64)
        if pad:
            vals = np.concatenate([vals, np.zeros(pad, np.int64)])
        _, lo, hi = CTYPES[ctype]
        if vals.size and (vals.min() < lo or vals.max() > hi):
            raise UserError(f"{symbol}: value outside {ctype} ({vals.min()}..{vals.max()}); "
                            "the model is not int8-deployable")
        key = (layout, ctype, vals.size, hashlib.sha256(vals.tobytes()).hexdigest())
        arr = self._by_key.get(key)
        if arr is None:
            used = self._symbols.setdefault(symbol, set())
            if layout in used or (used and "" in (layout, *used)):  # one name per branch: packed vs plain
                raise InternalError(f"const array symbol {symbol} defined twice with different values")
            arr = ConstArray(symbol, ctype, vals, model, layout, per_line)
            self._by_key[key] = arr
            used.add(layout)
        if model not in arr.users:
            arr.users.append(model)
        return arr.symbol

    def arrays_of(self, model: str) -> list[ConstArray]:
        return [a for a in self._by_key.values() if model in a.users]

    def emit(self, model: str) -> str:
        """Definitions (owned) and extern declarations (shared) for `model`, grouped by layout branch."""
        parts = []
        for layout in LAYOUTS:
            text = "".join(a.definition() if a.owner == model else a.declaration()
                           for a in self.arrays_of(model) if a.layout == layout)
            if not text:
                continue
            if layout == "":
                parts.append(text)
            else:
                cond = PACKED_MACRO if layout == "packed" else f"!{PACKED_MACRO}"
                parts.append(f"#if {cond}\n{text}#endif\n")
        return "\n".join(parts)

    def bytes_of(self, model: str, kernels: str = "reference", owned: bool = True) -> int:
        """Flash of the arrays `model` defines (owned) or borrows from another model, as linked with `kernels`."""
        skip = "packed" if kernels == "reference" else "plain"
        return sum(a.nbytes for a in self.arrays_of(model)
                   if a.layout != skip and (a.owner == model) == owned)
