"""Static memory plan: every activation tensor and kernel scratch gets a fixed arena offset.

All segments of a model share one schedule and one arena.  A segment's input is
the same buffer as the previous segment's features output, so the boundary
features stay in place.  Offsets are chosen greedily by size (largest first, at
the lowest offset that does not overlap a buffer alive at the same time), the
planner TFLite Micro itself uses.
"""
from __future__ import annotations

from dataclasses import dataclass

from tinyexit.errors import InternalError, UserError
from tinyexit.export.codegen_lower import Layer
from tinyexit.export.codegen_pack import scratch_bytes as packed_scratch_bytes
from tinyexit.export.codegen_pack import why_not_packed

ALIGN = 8  # LDRD/LDM on the optimized kernels want word alignment; 8 keeps int16 scratch aligned too


def scratch_bytes(layer: Layer, packed: bool = True) -> int:
    """Scratch a kernel may use (the arm_dsp set); mirrors TE_*_SCRATCH_BYTES in te_kernels.h and, for a
    CONV_2D the generator packs (`packed`: arm_dsp_layout on), te_conv_packed.h."""
    def round4(n):
        return (n + 3) & ~3

    if layer.kind == "conv":
        k_h, k_w = layer.p["k"]
        c_in = layer.p["in_shape"][2]
        k = round4(k_h * k_w * c_in)
        general = 4 * k + 8 * layer.p["out_shape"][2] + (k if c_in % 4 else 0)
        if packed and why_not_packed(layer) is None:
            return round4(max(general, packed_scratch_bytes(layer)))
        return general
    if layer.kind == "fc":
        return 2 * round4(layer.p["k"])
    return 0


@dataclass
class Buffer:
    key: tuple          # ("t", segment, tensor index) or ("scratch", global layer index)
    size: int
    first: int          # global layer index of the first layer that needs it
    last: int           # ... and of the last
    offset: int = -1
    aliases: tuple = ()  # further keys stored in this buffer (outputs written in place)

    def overlaps_in_time(self, other: "Buffer") -> bool:
        return self.first <= other.last and other.first <= self.last


@dataclass
class MemoryPlan:
    buffers: list[Buffer]
    arena_bytes: int
    peak_live_bytes: int  # the largest sum of sizes alive at one layer: a lower bound for any plan

    def offset(self, key: tuple) -> int:
        for b in self.buffers:
            if b.key == key or key in b.aliases:
                return b.offset
        raise InternalError(f"no buffer planned for {key}")


def collect_buffers(segments: list[tuple], canonical, packed: bool = True, in_place: bool = True) -> list[Buffer]:
    """segments: [(graph, layers, first_global_layer)], canonical(seg, tensor) -> buffer key; `packed`:
    CONV_2D layers get the arm_dsp packed layout (their scratch may differ); `in_place`: ADDs may
    overwrite an input."""
    spans: dict[tuple, list[int]] = {}
    sizes: dict[tuple, int] = {}
    alias = _in_place(segments, canonical) if in_place else {}

    def root(key):
        while key in alias:
            key = alias[key]
        return key

    def touch(key, g, size):
        key = root(key)
        span = spans.setdefault(key, [g, g])
        span[0], span[1] = min(span[0], g), max(span[1], g)
        sizes[key] = size

    for s, (graph, layers, g0) in enumerate(segments):
        g_last = g0 + len(layers) - 1
        for idx in graph.inputs:  # alive from the segment's first layer
            touch(canonical(s, idx), g0, graph.tensors[idx].nbytes)
        for i, layer in enumerate(layers):
            for idx in layer.inputs + layer.outputs:
                touch(canonical(s, idx), g0 + i, graph.tensors[idx].nbytes)
            if scratch_bytes(layer, packed):
                touch(("scratch", g0 + i), g0 + i, scratch_bytes(layer, packed))
        for idx in graph.outputs:  # read by the core after the segment returns
            touch(canonical(s, idx), g_last, graph.tensors[idx].nbytes)
    grouped: dict[tuple, list] = {}
    for k in alias:
        grouped.setdefault(root(k), []).append(k)
    return [Buffer(k, sizes[k], v[0], v[1], aliases=tuple(grouped.get(k, ()))) for k, v in spans.items()
            if sizes[k] > 0]


def _in_place(segments: list[tuple], canonical) -> dict[tuple, tuple]:
    """ADD output key -> the input key it overwrites: an input no later layer reads that is neither a
    segment's input nor one of its outputs (the core reads those), of the output's size."""
    last_use: dict[tuple, int] = {}
    protected: set[tuple] = set()
    for s, (graph, layers, g0) in enumerate(segments):
        protected.update(canonical(s, i) for i in list(graph.inputs) + list(graph.outputs))
        for i, layer in enumerate(layers):
            for idx in layer.inputs:
                last_use[canonical(s, idx)] = g0 + i
    alias: dict[tuple, tuple] = {}
    for s, (graph, layers, g0) in enumerate(segments):
        for i, layer in enumerate(layers):
            if layer.kind != "add" or len(set(layer.inputs)) != 2:
                continue
            out = canonical(s, layer.outputs[0])
            for idx in layer.inputs:
                key = canonical(s, idx)
                if (key not in protected and last_use.get(key) == g0 + i and key not in alias.values()
                        and graph.tensors[idx].nbytes == graph.tensors[layer.outputs[0]].nbytes):
                    alias[out] = key
                    break
    return alias


def plan_segments(segments: list[tuple], canonical, packed: bool = True, limit: int | None = None) -> MemoryPlan:
    """The smaller of the plans with and without in-place ADDs (greedy placement is not monotone)."""
    plans = [plan_arena(collect_buffers(segments, canonical, packed, in_place)) for in_place in (True, False)]
    plan = min(plans, key=lambda p: p.arena_bytes)
    if limit is not None and plan.arena_bytes > limit:
        raise UserError(f"the model needs a {plan.arena_bytes}-byte arena, more than the {limit} bytes allowed")
    return plan


def plan_arena(buffers: list[Buffer], limit: int | None = None) -> MemoryPlan:
    """Greedy by size; `limit` (bytes) raises UserError when the plan does not fit."""
    placed: list[Buffer] = []
    for buf in sorted(buffers, key=lambda b: (-b.size, b.first, str(b.key))):
        busy = sorted((b.offset, b.offset + b.size) for b in placed if b.overlaps_in_time(buf))
        offset = 0
        for lo, hi in busy:
            if offset + buf.size <= lo:
                break
            offset = max(offset, _align(hi))
        buf.offset = offset
        placed.append(buf)
    arena = _align(max((b.offset + b.size for b in placed), default=0))
    last = max((b.last for b in placed), default=-1)
    peak = max((sum(b.size for b in placed if b.first <= g <= b.last) for g in range(last + 1)), default=0)
    _check_disjoint(placed)
    if limit is not None and arena > limit:
        raise UserError(f"the model needs a {arena}-byte arena, more than the {limit} bytes allowed")
    return MemoryPlan(placed, arena, peak)


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def _check_disjoint(placed: list[Buffer]) -> None:
    for i, a in enumerate(placed):
        for b in placed[i + 1:]:
            if a.overlaps_in_time(b) and a.offset < b.offset + b.size and b.offset < a.offset + a.size:
                raise InternalError(f"memory plan overlaps {a.key} and {b.key}")
