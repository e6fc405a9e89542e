"""Trip counts of the arm_dsp FULLY_CONNECTED, depthwise, average-pool and packed-convolution loops.

Each function mirrors the loop structure of one kernel in firmware_bridge/firmware/kernels/arm_dsp
(which loops run, how often, on which path) and returns those counts as features; a cost model
fits one cost per count (eval/kernel_model.py), so a kernel whose instructions per iteration
change is absorbed by a re-fit, and only a change of its loops needs a change here.
"""
from __future__ import annotations

import numpy as np

FC_ROWS = 4                # te_fc.c TE_FC_ROWS: output rows per block
FC_CHUNK = 4               # te_fc_packed_blocks: groups unrolled per chunk
PAIRS_CHUNK = 16           # te_conv_packed.h te_conv_packed_pairs: groups unrolled per chunk
DW_RING_W = 64             # te_kernels.h TE_DW_RING_W
DW_PLANE = 5 * DW_RING_W // 2   # te_dwconv.c TE_DW_PLANE: words per channel plane
DW_PASS_PATHS = ("s1", "s2", "gs1", "gs2")   # stride along a line; g: the general requantization (C passes)
DW_PASS_COUNTS = ("lines", "quad_passes", "two_passes", "one_passes")
LANE_MAX_PIXELS = 255      # te_avgpool.c: windows summed in int16 lanes


def _clamps(rq) -> int:
    return int(rq.act_min > -128 or rq.act_max < 127)


def fc_features(layer, packed: bool) -> dict:
    """te_fc_s8: the input widened once (k // 4 words, then a byte tail), then 4 rows at a time.
    Speed (packed, kind fc): blocks of 4 rows over `groups` groups of 4 taps, run in unrolled chunks of 4; the
    rows past a multiple of 4 as one more block into a small buffer, copied out; the activation clamp.
    Size (kind fc_plain): te_fc_rows4 per 4 rows, then each remaining row by dot_row; per-row requantization
    (fast or general)."""
    p = layer.p
    k, n = p["k"], p["n_out"]
    groups, full, tail = (k + 3) // 4, n // FC_ROWS, n % FC_ROWS
    f = {"in_bytes": k, "out_bytes": n, "cin": k, "cout": n, "widen_words": k // 4, "widen_tail": k % 4,
         "widen_tail_call": int(k % 4 != 0)}
    if packed:
        blocks, calls = full + int(tail > 0), int(full > 0) + int(tail > 0)
        f.update(kind="fc", block_groups=blocks * groups, block_chunks=blocks * (-(-groups // FC_CHUNK)),
                 blocks=blocks, block_calls=calls, tail_rows=tail, tail_call=int(tail > 0),
                 clamp_outs=n * _clamps(p["rq"]))
        return f
    rq, bias = p["rq"], np.abs(np.asarray(p["bias_folded"], np.int64))
    fast = k < (1 << 29) // (128 * 127) and bool((rq.shift < 0).all()) and bool((bias < (1 << 29)).all())
    f.update(kind="fc_plain", row4_groups=full * groups, row4_blocks=full, row_groups=tail * groups, rows=tail,
             fast_outs=n * int(fast), general_outs=n * int(not fast))
    return f


def avgpool_features(p: dict) -> dict:
    """te_avgpool_s8: per output pixel, windows of <= 255 pixels sum 8 then 4 channels per pass in int16 lanes
    over `runs` runs of pixels (one run when the window spans the whole width); the remaining channels (or every
    channel of a bigger window) per channel, row by row."""
    (ih, iw, c), (oh, ow, _) = p["in_shape"], p["out_shape"]
    (kh, kw), (sh, sw), (pt, pl) = p["k"], p["stride"], p["pad"]
    f = {"in_bytes": ih * iw * c, "out_bytes": oh * ow * c, "out_pixels": oh * ow, "out_rows": oh, "cin": c, "cout": c,
         "lane8_passes": 0, "lane8_runs": 0, "lane8_pixels": 0, "lane4_passes": 0, "lane4_runs": 0,
         "lane4_pixels": 0, "chan_outs": 0, "chan_rows": 0, "chan_pixels": 0}
    for oy in range(oh):
        y0 = oy * sh - pt
        ys, ye = max(y0, 0), min(y0 + kh, ih)
        for ox in range(ow):
            x0 = ox * sw - pl
            xs, xe = max(x0, 0), min(x0 + kw, iw)
            n = (ye - ys) * (xe - xs)
            runs = 1 if (xs == 0 and xe == iw) else ye - ys
            c8 = c4 = 0
            if 0 < n <= LANE_MAX_PIXELS:
                c8 = c // 8
                c4 = (c - 8 * c8) // 4
            rest = c - 8 * c8 - 4 * c4
            f["lane8_passes"] += c8
            f["lane8_runs"] += c8 * runs
            f["lane8_pixels"] += c8 * n
            f["lane4_passes"] += c4
            f["lane4_runs"] += c4 * runs
            f["lane4_pixels"] += c4 * n
            f["chan_outs"] += rest
            f["chan_rows"] += rest * (ye - ys)
            f["chan_pixels"] += rest * n
    return f


def _dw_words(out: int, stride: int) -> int:
    return ((out - 1) * stride + 4 + 1) // 2


def dwconv_ring_features(layer) -> dict:
    """te_dwconv.c dw_ring (3x3, multiplier 1, strides 1 and 2, packed blocks): per group of 4 channels and strip
    of output lines, the input lines it needs widened into int16 planes (pairs with padding mixed in tested per
    pixel, all-image pairs by whole words; lines outside the image written as zero point only when their slot may
    hold an image line), then per channel and output line the four-output passes and the two- and one-output
    remainders (assembly, or dw_line in C with the general requantization); lines carried to the next strip
    moved up.  Lines are image columns when the map is taller than wide (`transposed`)."""
    from tinyexit.export.codegen_pack import dw_general, dw_transposed

    p = layer.p
    (ih, iw, c), (oh, ow, oc) = p["in_shape"], p["out_shape"]
    (sh, sw), (pt, pl) = p["stride"], p["pad"]
    tr = dw_transposed(layer)
    if tr:
        lines_in, len_in, lines_out, len_out, s_line, s_len, pad_line, pad_len = iw, ih, ow, oh, sw, sh, pl, pt
    else:
        lines_in, len_in, lines_out, len_out, s_line, s_len, pad_line, pad_len = ih, iw, oh, ow, sh, sw, pt, pl
    words = _dw_words(len_out, s_len)
    cap = DW_PLANE // words
    strip = (cap - 3) // s_line + 1
    one_strip = strip >= lines_out
    j_in = min(max(pad_len // 2, 0), words)
    j_main = min(max((pad_len + 1) // 2, j_in), words)
    j_end = min(max((len_in + pad_len) // 2, 0), words)
    j_out = min(max((len_in + pad_len + 1) // 2, j_in), words)
    if j_end < j_main:
        j_main = j_end = j_in
    mixed_idx = list(range(j_in, j_main)) + list(range(j_end, j_out))
    mixed_inside = sum(int(0 <= 2 * j - pad_len < len_in) + int(0 <= 2 * j + 1 - pad_len < len_in) for j in mixed_idx)
    all_inside = sum(int(0 <= 2 * j - pad_len < len_in) + int(0 <= 2 * j + 1 - pad_len < len_in)
                     for j in range(j_in, j_out))
    # the passes: assembly per stride for the plain requantization, dw_line in C for the general one
    g = ("g" if dw_general(layer) else "") + f"s{s_len}_"
    f = {"kind": "dwconv_ring", "in_bytes": ih * iw * c, "out_bytes": oh * ow * oc, "out_pixels": oh * ow,
         "cin": c, "cout": oc, "transposed": int(tr), "fill_slots": cap, "fill_iters": cap * words,
         "fill_words": cap * (j_in + words - j_out), "groups": 0, "strips": 0, "widen_calls": 0, "img_lines": 0,
         "zp_lines": 0, "zp_line_words": 0, "mixed_pairs": 0, "mixed_pixels": 0, "main_pairs": 0, "narrow_lines": 0,
         "narrow_pairs": 0, "narrow_bytes": 0, "chan_calls": 0, "move_words": 0, "move_calls": 0,
         **{f"{pre}_{n}": 0 for pre in DW_PASS_PATHS for n in DW_PASS_COUNTS}}
    quads, two, one = len_out // 4, (len_out & 3) >> 1, len_out & 1
    for c0 in range(0, c, 4):
        n = min(4, c - c0)
        zp_lines = not one_strip or c0 == 0
        f["groups"] += 1
        have = 0
        for oy in range(0, lines_out, strip):
            m = min(strip, lines_out - oy)
            y0, need = oy * s_line - pad_line, (m - 1) * s_line + 3
            f["strips"] += 1
            for t in range(have, need):
                iy = y0 + t
                f["widen_calls"] += 1
                if iy < 0 or iy >= lines_in:
                    f["zp_lines"] += int(zp_lines)
                    f["zp_line_words"] += (j_out - j_in) * int(zp_lines)
                elif n != 4:
                    f["narrow_lines"] += 1
                    f["narrow_pairs"] += j_out - j_in
                    f["narrow_bytes"] += all_inside * n
                else:
                    f["img_lines"] += 1
                    f["mixed_pairs"] += len(mixed_idx)
                    f["mixed_pixels"] += mixed_inside
                    f["main_pairs"] += j_end - j_main
            f["chan_calls"] += n
            f[g + "lines"] += n * m
            f[g + "quad_passes"] += n * m * quads
            f[g + "two_passes"] += n * m * two
            f[g + "one_passes"] += n * m * one
            have = need - m * s_line
            if have > 0 and oy + m < lines_out:
                f["move_calls"] += n
                f["move_words"] += n * have * words
            else:
                have = 0
    return f


def conv_packed_counts(layer, kp: int, pp: int) -> dict:
    """te_conv_packed.h: per pixel pair the computed channel pairs (pruned channels with all-zero weights are
    constants, stored per pixel pair instead), each over kp / 4 groups in unrolled chunks of 16; the sign
    correction only where act_min < out_zp."""
    from tinyexit.export.codegen_pack import computed_channels

    computed, const = computed_channels(layer)
    pairs, groups = len(computed) // 2, kp // 4
    rq = layer.p["rq"]
    signed = int(rq.act_min < rq.out_zp)
    return {"chan_pairs": pp * pairs, "inner": pp * pairs * groups, "chunks": pp * pairs * (-(-groups // PAIRS_CHUNK)),
            "signed_outs": 4 * pp * pairs * signed, "const_outs": pp * len(const), "pair_calls": pp * int(pairs > 0)}
