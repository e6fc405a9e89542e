"""C text for prepared layers: constant arrays, kernel parameter structs, calls.

Everything here is formatting; the numbers come from codegen_lower (prepare) and
codegen_plan (offsets).  Weights and parameters are `const`, so they land in
flash; only the arena is RAM.  Constant arrays go through an `ArrayFn` (a
codegen_consts.ConstPool bound to the model), which returns the symbol of an
identical array already emitted, if any.
"""
from __future__ import annotations

from typing import Callable

from tinyexit.errors import InternalError
from tinyexit.export import int8_ref as ref
from tinyexit.export.codegen_consts import PACKED_MACRO
from tinyexit.export.codegen_lower import Layer
from tinyexit.export.codegen_pack import pack_conv, pack_dwconv, pack_fc

ArrayFn = Callable[..., str]  # (symbol, ctype, values, pad=0, layout="", per_line=16) -> symbol to use


def _struct(ctype: str, name: str, fields: dict) -> str:
    body = ",\n    ".join(f".{k} = {v}" for k, v in fields.items())
    return f"static const {ctype} {name} = {{\n    {body}\n}};\n"


def _struct_branches(ctype: str, name: str, common: dict, packed: dict, plain: dict) -> str:
    """A struct whose last fields differ between arm_dsp builds (packed layout) and the others."""
    def lines(d):
        return "".join(f"    .{k} = {v},\n" for k, v in d.items())
    return (f"static const {ctype} {name} = {{\n{lines(common)}#if {PACKED_MACRO}\n{lines(packed)}#else\n"
            f"{lines(plain)}#endif\n}};\n")


def _requant_arrays(sym: str, layer: Layer, arr: ArrayFn, layout: str = "") -> dict:
    rq = layer.p["rq"]
    return dict(w=arr(f"{sym}_w", "int8_t", layer.p["weights"], pad=4, layout=layout),
                bias=arr(f"{sym}_bias", "int32_t", layer.p["bias_folded"], layout=layout, per_line=8),
                mult=arr(f"{sym}_mult", "int32_t", rq.mult, layout=layout, per_line=8),
                shift=arr(f"{sym}_shift", "int8_t", rq.shift, layout=layout))


def _conv(sym: str, layer: Layer, arr: ArrayFn, pack: bool = False) -> str:
    p, rq = layer.p, layer.p["rq"]
    (ih, iw, ic), (oh, ow, oc) = p["in_shape"], p["out_shape"]
    fields = dict(in_h=ih, in_w=iw, in_c=ic, out_h=oh, out_w=ow, out_c=oc, k_h=p["k"][0], k_w=p["k"][1],
                  stride_h=p["stride"][0], stride_w=p["stride"][1], dil_h=p["dilation"][0],
                  dil_w=p["dilation"][1], pad_top=p["pad"][0], pad_left=p["pad"][1],
                  depth_mult=p["depth_multiplier"], in_zp=p["in_zp"], act_min=rq.act_min, act_max=rq.act_max,
                  out_zp=rq.out_zp)
    if layer.kind == "dwconv":
        return _dwconv(sym, layer, arr, fields, pack)
    packed = pack_conv(layer) if pack else None
    if packed is None:
        return _struct("te_conv_params_t", sym, {**fields, **_requant_arrays(sym, layer, arr)})
    # arm_dsp builds: int16 weights and requantization constants prepared here; mult == NULL marks them
    w = arr(f"{sym}_w", "int32_t", packed.weights, layout="packed", per_line=8)
    dsp = dict(w=f"(const int8_t *){w}", bias=arr(f"{sym}_bias", "int32_t", packed.bias, layout="packed", per_line=8),
               mult="0", shift="0")
    return _struct_branches("te_conv_params_t", sym, fields, dsp, _requant_arrays(sym, layer, arr, "plain"))


def _dwconv(sym: str, layer: Layer, arr: ArrayFn, fields: dict, pack: bool) -> str:
    words = pack_dwconv(layer) if pack else None
    if words is None:
        return _struct("te_conv_params_t", sym, {**fields, **_requant_arrays(sym, layer, arr)})
    # arm_dsp speed builds: per-channel blocks of int16 weight pairs and requantization constants
    # (codegen_pack.pack_dwconv); mult == NULL marks them
    w = arr(f"{sym}_w", "int32_t", words, layout="packed", per_line=10)
    dsp = dict(w=f"(const int8_t *){w}", bias="0", mult="0", shift="0")
    return _struct_branches("te_conv_params_t", sym, fields, dsp, _requant_arrays(sym, layer, arr, "plain"))


def _fc(sym: str, layer: Layer, arr: ArrayFn, pack: bool = False) -> str:
    p, rq = layer.p, layer.p["rq"]
    fields = dict(k=p["k"], n_out=p["n_out"], act_min=rq.act_min, act_max=rq.act_max, out_zp=rq.out_zp)
    packed = pack_fc(layer) if pack else None
    if packed is None:
        return _struct("te_fc_params_t", sym, {**fields, **_requant_arrays(sym, layer, arr)})
    # arm_dsp speed builds: row blocks of int16 weight pairs (codegen_pack.pack_fc); mult == NULL marks them
    w = arr(f"{sym}_w", "int32_t", packed.weights, layout="packed", per_line=8)
    dsp = dict(w=f"(const int8_t *){w}", bias=arr(f"{sym}_bias", "int32_t", packed.bias, layout="packed", per_line=8),
               mult="0", shift="0")
    return _struct_branches("te_fc_params_t", sym, fields, dsp, _requant_arrays(sym, layer, arr, "plain"))


def _add(sym: str, layer: Layer, arr: ArrayFn) -> str:
    a = layer.p["add"]
    fields = dict(size=layer.p["size"], in1_offset=a.in1_offset, in2_offset=a.in2_offset, in1_mult=a.in1_mult,
                  in2_mult=a.in2_mult, out_mult=a.out_mult, in1_shift=a.in1_shift, in2_shift=a.in2_shift,
                  out_shift=a.out_shift, act_min=a.act_min, act_max=a.act_max, out_zp=a.out_zp,
                  lut1=arr(f"{sym}_lut1", "int32_t", ref.add_input_table(a, 1), per_line=8),
                  lut2=arr(f"{sym}_lut2", "int32_t", ref.add_input_table(a, 2), per_line=8))
    return _struct("te_add_params_t", sym, fields)


def _mean(sym: str, layer: Layer, arr: ArrayFn) -> str:
    p = layer.p
    h, w, c = p["in_shape"]
    return _struct("te_mean_params_t", sym, dict(h=h, w=w, c=c, in_zp=p["in_zp"], out_zp=p["out_zp"],
                                                 mult=p["mult"], shift=p["shift"]))


def _avgpool(sym: str, layer: Layer, arr: ArrayFn) -> str:
    p = layer.p
    (ih, iw, c), (oh, ow, _) = p["in_shape"], p["out_shape"]
    return _struct("te_avgpool_params_t", sym, dict(
        in_h=ih, in_w=iw, c=c, out_h=oh, out_w=ow, k_h=p["k"][0], k_w=p["k"][1], stride_h=p["stride"][0],
        stride_w=p["stride"][1], pad_top=p["pad"][0], pad_left=p["pad"][1], act_min=p["act_min"],
        act_max=p["act_max"]))


def _pad(sym: str, layer: Layer, arr: ArrayFn) -> str:
    p = layer.p
    (ih, iw, ic), (oh, ow, oc) = p["in_shape"], p["out_shape"]
    pads = p["paddings"]
    return _struct("te_pad_params_t", sym, dict(in_h=ih, in_w=iw, in_c=ic, out_h=oh, out_w=ow, out_c=oc,
                                                pad_top=pads[1][0], pad_left=pads[2][0], pad_front=pads[3][0],
                                                value=p["value"]))


def _lut(sym: str, layer: Layer, arr: ArrayFn) -> str:
    lut = arr(f"{sym}_lut", "int8_t", layer.p["lut"])
    return _struct("te_lut_params_t", sym, dict(size=layer.p["size"], lut=lut))


def _softmax(sym: str, layer: Layer, arr: ArrayFn) -> str:
    lut = arr(f"{sym}_exp", "int32_t", layer.p["softmax"].exp_lut, per_line=8)
    return _struct("te_softmax_params_t", sym, dict(rows=layer.p["rows"], depth=layer.p["depth"], exp_lut=lut))


def _requant(sym: str, layer: Layer, arr: ArrayFn) -> str:
    p = layer.p
    return _struct("te_requant_params_t", sym, dict(size=p["size"], in_zp=p["in_zp"], out_zp=p["out_zp"],
                                                    mult=p["mult"], shift=p["shift"]))


_DECL = {"conv": _conv, "dwconv": _conv, "fc": _fc, "add": _add, "mean": _mean, "avgpool": _avgpool,
         "pad": _pad, "logistic": _lut, "softmax": _softmax, "requant": _requant, "copy": lambda sym, layer, arr: ""}


def layer_decl(sym: str, layer: Layer, arr: ArrayFn, pack: bool = False) -> str:
    """The layer's parameter struct; its constant arrays are registered through `arr`.  `pack`: give
    CONV_2D layers the arm_dsp kernels' packed layout (codegen_pack.py) in arm_dsp builds."""
    if layer.kind in ("conv", "dwconv"):
        return _conv(sym, layer, arr, pack)
    if layer.kind == "fc":
        return _fc(sym, layer, arr, pack)
    return _DECL[layer.kind](sym, layer, arr)


def layer_call(sym: str, layer: Layer, ins: list[int], out: int, scratch: int | None) -> str:
    a = [f"arena + {o}" for o in ins]
    o = f"arena + {out}"
    k = layer.kind
    if k == "conv":
        return f"te_conv_s8(&{sym}, {a[0]}, {o}, {'arena + %d' % scratch if scratch is not None else '0'});"
    if k == "fc":
        return f"te_fc_s8(&{sym}, {a[0]}, {o}, {'arena + %d' % scratch if scratch is not None else '0'});"
    if k == "add":
        return f"te_add_s8(&{sym}, {a[0]}, {a[1]}, {o});"
    if k == "copy":
        return f"te_copy_s8({layer.p['size']}u, {a[0]}, {o});"
    fn = {"dwconv": "te_dwconv_s8", "mean": "te_mean_s8", "avgpool": "te_avgpool_s8", "pad": "te_pad_s8",
          "logistic": "te_lut_s8", "softmax": "te_softmax_s8", "requant": "te_requant_s8"}.get(k)
    if fn is None:
        raise InternalError(f"no C call for layer kind {k}")
    return f"{fn}(&{sym}, {a[0]}, {o});"


def scratch_assert(sym: str, layer: Layer, size: int) -> str:
    """A compile-time check tying the host's scratch reservation to the kernels' macro."""
    if layer.kind == "conv":
        k_h, k_w = layer.p["k"]
        need = f"TE_CONV_SCRATCH_BYTES({k_h}, {k_w}, {layer.p['in_shape'][2]}, {layer.p['out_shape'][2]})"
    elif layer.kind == "fc":
        need = f"TE_FC_SCRATCH_BYTES({layer.p['k']})"
    else:
        return ""
    return f'_Static_assert({size}u >= {need}, "{sym}: scratch reserved on the host is too small");\n'
