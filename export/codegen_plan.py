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
    shifts: tuple = ()   # (key, bytes from the buffer's start) of members that do not start at it

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
                return b.offset + dict(b.shifts).get(key, 0)
        raise InternalError(f"no buffer planned for {key}")


def collect_buffers(segments: list[tuple], canonical, packed: bool = True, in_place: bool = True,
                    conv_in_place: bool = True) -> list[Buffer]:
    """segments: [(graph, layers, first_global_layer)], canonical(seg, tensor) -> buffer key; `packed`:
    CONV_2D layers get the arm_dsp packed layout (their scratch may differ); `in_place`: ADDs may
    overwrite an input; `conv_in_place`: so may CONV_2D outputs, shifted down as far as their kernels need."""
    spans: dict[tuple, list[int]] = {}
    sizes: dict[tuple, int] = {}
    alias = _in_place(segments, canonical, conv_in_place) if in_place else {}

    def root(key):
        while key in alias:
            key = alias[key][0]
        return key

    def position(key):  # bytes from the root tensor's start
        pos = 0
        while key in alias:
            key, shift = alias[key]
            pos += shift
        return pos

    def touch(key, g, size):
        key_root, pos = root(key), position(key)
        span = spans.setdefault(key_root, [g, g])
        span[0], span[1] = min(span[0], g), max(span[1], g)
        ext = sizes.setdefault(key_root, [0, 0])
        ext[0], ext[1] = min(ext[0], pos), max(ext[1], pos + size)

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
    buffers = []
    for k, v in spans.items():
        lo, hi = sizes[k]
        if hi - lo <= 0:
            continue
        members = [k, *grouped.get(k, ())]
        shifts = tuple((m, position(m) - lo) for m in members if position(m) != lo)
        buffers.append(Buffer(k, hi - lo, v[0], v[1], aliases=tuple(grouped.get(k, ())), shifts=shifts))
    return buffers


def _in_place(segments: list[tuple], canonical, conv: bool = True) -> dict[tuple, tuple]:
    """Output key -> (the input key whose buffer it overwrites, its start relative to that input's, bytes).

    ADD: an input of the output's size, same start.  CONV_2D (`conv`): its one input, the output shifted
    down by `conv_shift` so that no write lands on input bytes a kernel still reads.  Either only for an
    input no later layer reads that is neither a segment's input nor one of its outputs (the core reads
    those), and that no other output already overwrites."""
    last_use: dict[tuple, int] = {}
    protected: set[tuple] = set()
    for s, (graph, layers, g0) in enumerate(segments):
        protected.update(canonical(s, i) for i in list(graph.inputs) + list(graph.outputs))
        for i, layer in enumerate(layers):
            for idx in layer.inputs:
                last_use[canonical(s, idx)] = g0 + i
    alias: dict[tuple, tuple] = {}
    taken: set[tuple] = set()
    for s, (graph, layers, g0) in enumerate(segments):
        for i, layer in enumerate(layers):
            if layer.kind == "add" and len(set(layer.inputs)) == 2:
                candidates = [(idx, 0) for idx in layer.inputs
                              if graph.tensors[idx].nbytes == graph.tensors[layer.outputs[0]].nbytes]
            elif layer.kind == "conv" and conv:
                # rounded down to ALIGN: every tensor keeps the alignment LDRD/LDM need
                candidates = [(layer.inputs[0], -_align(-conv_shift(layer)))]
            else:
                continue
            out = canonical(s, layer.outputs[0])
            for idx, shift in candidates:
                key = canonical(s, idx)
                if key not in protected and last_use.get(key) == g0 + i and key not in taken:
                    alias[out] = (key, shift)
                    taken.add(key)
                    break
    return alias


def conv_shift(layer: Layer) -> int:
    """Where a CONV_2D output may start relative to its input's start (bytes, <= 0) when it overwrites it.

    Every kernel set computes output pixels in row-major order and writes a pixel only once it has read
    that pixel's window (the reference kernel writes channel by channel while it still reads the window;
    the arm_dsp kernels read ahead: windows of a pixel pair, whole widened rows, or a padded copy of the
    whole input).  So pixel q's bytes may land on input bytes no window of q or a later pixel reads: the
    output starts at the lowest window start of pixels >= q minus the bytes written up to q's end."""
    in_h, in_w, in_c = layer.p["in_shape"]
    out_h, out_w, out_c = layer.p["out_shape"]
    (sh, sw), (pt, pl) = layer.p["stride"], layer.p["pad"]
    shift, later_start = 0, in_h * in_w * in_c
    for q in range(out_h * out_w - 1, -1, -1):  # suffix minimum of the window starts
        oy, ox = divmod(q, out_w)
        iy, ix = min(max(oy * sh - pt, 0), in_h - 1), min(max(ox * sw - pl, 0), in_w - 1)
        later_start = min(later_start, (iy * in_w + ix) * in_c)
        shift = min(shift, later_start - (q + 1) * out_c)
    return shift


def plan_segments(segments: list[tuple], canonical, packed: bool = True, limit: int | None = None) -> MemoryPlan:
    """The smallest of the plans with in-place ADDs and CONV_2Ds, ADDs only, and none (greedy placement is not
    monotone)."""
    plans = [plan_arena(collect_buffers(segments, canonical, packed, in_place, conv))
             for in_place, conv in ((True, True), (True, False), (False, False))]
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
