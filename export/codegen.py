"""C code generation from the per-segment int8 TFLite files (stage entry: `generate_c`).

    generate_c([segment_0.int8.tflite, ...], CodegenConfig) -> CSources
    generate_c_for_run(run_dir, "classifier") -> RUN/export/classifier/c/

The output is plain C99 for the kernels in firmware_bridge/firmware/kernels:
weights and per-channel requantization parameters as `static const` arrays
(prepared on the host), one function per exit segment `<model>_exit<k>_run`,
a static schedule, and one arena whose offsets come from a liveness plan in
which each segment's input is the previous segment's features, in place.
The models of one export share a `ConstPool`: each distinct constant array is
defined once (in the segmented model) and the one-subgraph variants refer to it.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tinyexit import __version__
from tinyexit.bundle import Bundle, check_boundary, load_bundle
from tinyexit.errors import UserError
from tinyexit.export.codegen_consts import PACKED_MACRO, ConstPool
from tinyexit.export.codegen_emit import layer_call, layer_decl, scratch_assert
from tinyexit.export.codegen_lower import lower, read_segment
from tinyexit.export.codegen_pack import why_not_packed
from tinyexit.export.codegen_plan import plan_segments, scratch_bytes
from tinyexit.export.tflite_graph import SubgraphInfo

_HEX = re.compile(r"^[0-9a-f]*$")
MONOLITHIC = {"full_tflite": "full", "all_exits_tflite": "all_exits"}  # manifest files key -> C name suffix


@dataclass(frozen=True)
class CodegenConfig:
    model_name: str = "model"            # C symbol prefix and file stem
    artifact_hash: str = ""              # the manifest's artifact_hash; the device reports it
    source_checkpoint_sha256: str = ""   # written into the header comment
    config_sha256: str = ""
    arena_limit: int | None = None       # bytes; refuse larger plans
    # arm_dsp builds get CONV_2D weights pre-widened to int16 and interleaved for a pure-SMLAD inner loop
    # (export/codegen_pack.py): ~30 % fewer instructions for ~2x the convolution weights' flash
    arm_dsp_layout: bool = True

    def __post_init__(self):
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,31}", self.model_name):
            raise UserError(f"model name '{self.model_name}': must be a C identifier (letters, digits, _)")
        for key in ("artifact_hash", "source_checkpoint_sha256", "config_sha256"):
            if not _HEX.match(getattr(self, key)):
                raise UserError(f"codegen {key} '{getattr(self, key)}': must be lower-case hex")
        if self.arena_limit is not None and self.arena_limit <= 0:
            raise UserError(f"arena_limit {self.arena_limit}: must be a positive byte count")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "CodegenConfig":
        return cls(**d)


@dataclass
class CSources:
    model_name: str
    files: dict[str, str]
    arena_bytes: int
    peak_live_bytes: int
    weight_bytes: int             # const arrays this model's file defines (arm_dsp build, the default)
    source_sha256: str
    layers: list[dict] = field(default_factory=list)
    segments: list[dict] = field(default_factory=list)
    config: dict = field(default_factory=dict)
    weight_bytes_reference: int = 0   # the same with the reference kernels
    shared_weight_bytes: int = 0      # arrays it uses that an earlier model of the pool defines
    shared_arrays: int = 0

    def summary(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "files"}

    def write(self, out_dir: str | Path, primary: bool = True) -> Path:
        """Write the sources and `<model>_codegen.json`; the segmented model (primary) also as `codegen.json`."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        for name, text in self.files.items():
            (out / name).write_text(text)
        meta = json.dumps({"tinyexit_version": __version__, **self.summary()}, indent=2) + "\n"
        (out / f"{self.model_name}_codegen.json").write_text(meta)
        if primary:
            (out / "codegen.json").write_text(meta)
        return out


def generate_c(tflite_paths_or_bytes: list, cfg: CodegenConfig, pool: ConstPool | None = None) -> CSources:
    """Per-segment single-subgraph int8 TFLite files (paths or bytes), in segment order -> C sources.

    `pool`: constant arrays of models generated before (their files must be linked too); arrays with the
    same contents are referenced, not emitted again."""
    blobs = [_read(x, i) for i, x in enumerate(tflite_paths_or_bytes)]
    if not blobs:
        raise UserError("generate_c: no segment files given; pass export/<model>/tflm/segment_k.int8.tflite")
    graphs = [read_segment(data, name) for name, data in blobs]
    layered = [(g, lower(g)) for g in graphs]
    roles = [_segment_roles(graphs, k) for k in range(len(graphs))]
    alias = {(k + 1, graphs[k + 1].inputs[0]): ("t", k, roles[k]["features"]) for k in range(len(graphs) - 1)}

    def canonical(seg: int, idx: int) -> tuple:
        return alias.get((seg, idx), ("t", seg, idx))

    segs, g0 = [], 0
    for g, layers in layered:
        segs.append((g, layers, g0))
        g0 += len(layers)
    plan = plan_segments(segs, canonical, cfg.arm_dsp_layout, cfg.arena_limit)
    source_sha = hashlib.sha256("".join(g.sha256 for g in graphs).encode()).hexdigest()
    return _emit(cfg, segs, roles, plan, canonical, source_sha, pool if pool is not None else ConstPool())


def _read(x, i: int) -> tuple[str, bytes]:
    if isinstance(x, (bytes, bytearray, memoryview)):
        return f"segment_{i}", bytes(x)
    path = Path(x)
    try:
        return str(path), path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: segment file missing; run 'tinyexit export RUN_DIR' first") from None


def _segment_roles(graphs: list[SubgraphInfo], k: int) -> dict:
    """Which output is the exit's logits and which the features for segment k+1."""
    g = graphs[k]
    last = k == len(graphs) - 1
    if len(g.inputs) != 1:
        raise UserError(f"{g.source}: has {len(g.inputs)} inputs; a segment takes exactly one")
    if last and len(g.outputs) == 1:
        return {"logits": g.outputs[0], "features": None}
    by_name = {g.tensors[i].name.split(":")[0].split(";")[0]: i for i in g.outputs}
    if len(graphs) == 1 and len(g.outputs) > 2:  # e.g. every exit head in one subgraph: keep 'logits'
        if "logits" not in by_name:
            raise UserError(f"{g.source}: {len(g.outputs)} outputs and none named 'logits'; re-run 'tinyexit export'")
        return {"logits": by_name["logits"], "features": None}
    if len(g.outputs) != 2 or (last and len(graphs) > 1):
        want = "only its logits" if last else "(logits, features)"
        raise UserError(f"{g.source}: segment {k} must return {want}, found {len(g.outputs)} outputs")
    feat = by_name.get("features")
    if last:  # a single-file model with a second output: kept in the arena like features
        feat = feat if feat is not None else max(g.outputs, key=lambda i: len(g.tensors[i].shape))
        return {"logits": next(i for i in g.outputs if i != feat), "features": feat}
    nxt = graphs[k + 1].tensors[graphs[k + 1].inputs[0]]
    if feat is None:
        cands = [i for i in g.outputs if g.tensors[i].shape == nxt.shape]
        feat = cands[-1] if cands else g.outputs[1]
    logits = next(i for i in g.outputs if i != feat)
    f = g.tensors[feat]
    if f.dtype != nxt.dtype:
        raise UserError(f"{g.source}: features are {f.dtype}, the next segment's input {nxt.dtype}; "
                        "re-run 'tinyexit export'")
    # the bundle's one boundary rule (tinyexit.bundle.check_boundary), applied to the files themselves
    check_boundary(f"{g.source} -> {graphs[k + 1].source}", f.spec(), nxt.spec(), k + 1)
    return {"logits": logits, "features": feat}


def _emit(cfg: CodegenConfig, segs, roles, plan, canonical, source_sha: str, pool: ConstPool) -> CSources:
    name, up = cfg.model_name, cfg.model_name.upper()
    decls, funcs, seg_rows, layer_rows, asserts = [], [], [], [], []

    def arr(symbol, ctype, values, pad=0, layout="", per_line=16):
        return pool.array(name, symbol, ctype, values, pad, layout, per_line)

    for k, (g, layers, g0) in enumerate(segs):
        body = []
        for i, layer in enumerate(layers):
            gi = g0 + i
            sym = f"{name}_L{gi}"
            decls.append(layer_decl(sym, layer, arr, cfg.arm_dsp_layout))
            ins = [plan.offset(canonical(k, t)) for t in layer.inputs]
            out = plan.offset(canonical(k, layer.outputs[0]))
            scr_bytes = scratch_bytes(layer, cfg.arm_dsp_layout)
            scr = plan.offset(("scratch", gi)) if scr_bytes else None
            if scr is not None:
                asserts.append(scratch_assert(sym, layer, scr_bytes))
            body.append(f"    {layer_call(sym, layer, ins, out, scr)}\n    te_layer_done({gi});")
            packed = cfg.arm_dsp_layout and why_not_packed(layer) is None
            layer_rows.append({"index": gi, "segment": k, "name": f"seg{k}/{layer.label}", "kind": layer.kind,
                               "macs": layer.macs, "scratch_bytes": scr_bytes,
                               "arm_dsp_layout": "packed" if packed else "plain"})
        funcs.append(f"void {name}_exit{k}_run(int8_t *arena)\n{{\n" + "\n".join(body) + "\n}\n")
        seg_rows.append(_segment_row(k, g, layers, g0, roles[k], plan, canonical))
    header = _banner(cfg, source_sha)
    h = _model_header(header, name, up, plan.arena_bytes, segs)
    c = (header + f'#include "te_kernels.h"\n#include "{name}_model.h"\n\n' + _layout_macro(pool, name)
         + pool.emit(name) + "\n"
         + "\n".join(decls) + "\n" + "".join(asserts) + "\n" + "\n".join(funcs) + "\n"
         + _descriptor(name, up, cfg, source_sha, seg_rows, layer_rows))
    shared = [a for a in pool.arrays_of(name) if a.owner != name]
    return CSources(name, {f"{name}_model.h": h, f"{name}_model.c": c}, plan.arena_bytes, plan.peak_live_bytes,
                    pool.bytes_of(name, "arm_dsp"), source_sha, layer_rows, seg_rows, cfg.to_dict(),
                    weight_bytes_reference=pool.bytes_of(name, "reference"),
                    shared_weight_bytes=pool.bytes_of(name, "arm_dsp", owned=False), shared_arrays=len(shared))


def _layout_macro(pool: ConstPool, name: str) -> str:
    if all(a.layout == "" for a in pool.arrays_of(name)):
        return ""
    return (f"/* arm_dsp builds read packed convolution weights (export/codegen_pack.py) */\n#ifndef {PACKED_MACRO}\n"
            f"#if defined(TE_KERNELS_ARM_DSP) || defined(TE_EMULATE_DSP)\n#define {PACKED_MACRO} 1\n#else\n"
            f"#define {PACKED_MACRO} 0\n#endif\n#endif\n\n")


def _segment_row(k, g, layers, g0, role, plan, canonical) -> dict:
    lt = g.tensors[role["logits"]]
    scale, zp = lt.qparams
    feat = role["features"]
    return {"index": k, "in_offset": plan.offset(canonical(k, g.inputs[0])),
            "in_bytes": g.tensors[g.inputs[0]].nbytes, "in_shape": list(g.tensors[g.inputs[0]].shape),
            "logits_offset": plan.offset(canonical(k, role["logits"])), "num_classes": lt.nbytes,
            "logits_shape": list(lt.shape),
            "feat_offset": plan.offset(canonical(k, feat)) if feat is not None else 0,
            "feat_bytes": g.tensors[feat].nbytes if feat is not None else 0,
            "logits_scale": scale, "logits_zp": zp, "first_layer": g0, "num_layers": len(layers),
            "macs": int(sum(layer.macs for layer in layers)), "source_sha256": g.sha256}


def _banner(cfg: CodegenConfig, source_sha: str) -> str:
    return ("/* Generated by tinyexit " + __version__ + " (export/codegen.py) - do not edit.\n"
            f" * model: {cfg.model_name}\n"
            f" * source .tflite segments sha256: {source_sha}\n"
            f" * source checkpoint sha256: {cfg.source_checkpoint_sha256 or 'n/a'}\n"
            f" * config sha256: {cfg.config_sha256 or 'n/a'}\n"
            f" * codegen config sha256: {hashlib.sha256(json.dumps(cfg.to_dict(), sort_keys=True).encode()).hexdigest()}\n"
            f" * artifact hash: {cfg.artifact_hash or 'n/a'}\n */\n")


def _model_header(banner: str, name: str, up: str, arena: int, segs) -> str:
    protos = "".join(f"void {name}_exit{k}_run(int8_t *arena);\n" for k in range(len(segs)))
    n_layers = sum(len(layers) for _, layers, _ in segs)
    return (banner + f"#ifndef {up}_MODEL_H\n#define {up}_MODEL_H\n\n#include <stdint.h>\n#include \"te_model.h\"\n\n"
            f"#define {up}_ARENA_BYTES {arena}u\n#define {up}_NUM_SEGMENTS {len(segs)}u\n"
            f"#define {up}_NUM_LAYERS {n_layers}u\n\n{protos}\nextern const te_model_t {name}_model;\n\n#endif\n")


def _descriptor(name, up, cfg, source_sha, seg_rows, layer_rows) -> str:
    segs = []
    for s in seg_rows:
        segs.append(f"    {{{name}_exit{s['index']}_run, {s['in_offset']}u, {s['in_bytes']}u, {s['logits_offset']}u, "
                    f"{s['num_classes']}u, {s['feat_offset']}u, {s['feat_bytes']}u, {float(s['logits_scale'])!r}f, "
                    f"{s['logits_zp']}, {s['first_layer']}u, {s['num_layers']}u, {s['macs']}u}}")
    names = ",\n    ".join(f'"{row["name"]}"' for row in layer_rows)
    macs = ", ".join(f"{row['macs']}u" for row in layer_rows)
    return (f"static const te_segment_t {name}_segments[{up}_NUM_SEGMENTS] = {{\n" + ",\n".join(segs) + "\n};\n\n"
            f"static const char *const {name}_layer_names[{up}_NUM_LAYERS] = {{\n    {names}\n}};\n\n"
            f"static const uint32_t {name}_layer_macs[{up}_NUM_LAYERS] = {{{macs}}};\n\n"
            f"const te_model_t {name}_model = {{\n    \"{name}\", \"{cfg.artifact_hash}\", \"{source_sha}\",\n"
            f"    {up}_ARENA_BYTES, {up}_NUM_SEGMENTS, {name}_segments,\n"
            f"    {up}_NUM_LAYERS, {name}_layer_names, {name}_layer_macs\n}};\n")


def generate_c_for_run(run_dir: str | Path, model_name: str, cfg: CodegenConfig | None = None) -> Path:
    """The bundle RUN/export/<model>/ (read by tinyexit.bundle, every file checked) -> RUN/export/<model>/c/."""
    from tinyexit.rundir import require_run_dir

    run = require_run_dir(run_dir)
    bundle = load_bundle(run / "export" / model_name, verify=True)
    paths = [bundle.file(seg.files.get("tflm"), f"TFLite Micro file of segment {seg.index}", verify=False)
             for seg in bundle.segments]
    cfg = cfg or CodegenConfig(model_name=model_name, artifact_hash=bundle.artifact_hash, **_provenance(bundle))
    pool = ConstPool()
    sources = generate_c(paths, cfg, pool)
    out = sources.write(bundle.dir / "c")
    print(f"codegen: {model_name}: {len(sources.layers)} layers in {len(sources.segments)} segments, "
          f"arena {sources.arena_bytes} B, weights {sources.weight_bytes} B -> {out}")
    for key, suffix in MONOLITHIC.items():  # the one-subgraph models RUN mode FULL compares against
        if not bundle.files.get(key):
            continue
        path = bundle.file(bundle.files[key], key, verify=False)
        mono = generate_c([path], CodegenConfig(**{**cfg.to_dict(), "model_name": f"{model_name}_{suffix}"}), pool)
        mono.write(out, primary=False)
        print(f"codegen: {model_name}_{suffix}: {len(mono.layers)} layers, arena {mono.arena_bytes} B, weights "
              f"{mono.weight_bytes} B of its own + {mono.shared_weight_bytes} B shared with {model_name} -> {out}")
    return out


def _provenance(bundle: Bundle) -> dict:
    """Checkpoint and config hashes for the banner; an imported bundle has neither."""
    ckpt = bundle.manifest.get("source_checkpoint") or {}
    return {"source_checkpoint_sha256": str(ckpt.get("sha256") or ""),
            "config_sha256": str(bundle.manifest.get("config_sha256") or "")}
