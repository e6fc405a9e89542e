"""The export IR as raw TensorFlow ops (NHWC), ready for the TFLite converter.

Only ops with a TFLite builtin twin that TFLite Micro also has are used.
Strided convolutions are padded explicitly: TF's 'SAME' puts the extra row at
the bottom/right while PyTorch pads both sides, so 'SAME' would shift the
sampling grid by one pixel.  Stride-1 'SAME' is symmetric for odd kernels and
matches PyTorch, so it is kept (no PAD op).

Global average pooling over a large map is written as one AVERAGE_POOL_2D with a whole-map window
and a RESHAPE, not as MEAN: TFLite's int8 MEAN over H and W is a generic reduction that cost
~200 us on a 32x32x32 head (more than the rest of that segment), its AVERAGE_POOL_2D ~2 us.  Maps of
at most MEAN_MAX_PIXELS keep MEAN, so the 8x8 digits bundles stay as they were.
"""
from __future__ import annotations

from tinyexit.errors import InternalError
from tinyexit.export.lower import Act, Conv, Dense, Mean, Residual, SegmentIR

MEAN_MAX_PIXELS = 64   # H*W above this pools with AVERAGE_POOL_2D + RESHAPE (see above)


def _act(tf, x, act):
    if act is None:
        return x
    if act == "relu":
        return tf.nn.relu(x)
    if act == "sigmoid":
        return tf.math.sigmoid(x)
    raise InternalError(f"activation {act!r} has no TensorFlow twin")


def _conv(tf, x, op: Conv):
    k = op.w.shape[0]
    same = op.stride == 1 and op.pad == k // 2 and k % 2 == 1
    if not same and op.pad:
        x = tf.pad(x, [[0, 0], [op.pad, op.pad], [op.pad, op.pad], [0, 0]])
    padding = "SAME" if same else "VALID"
    strides = [1, op.stride, op.stride, 1]
    if op.depthwise:
        y = tf.nn.depthwise_conv2d(x, tf.constant(op.w), strides, padding)
    else:
        y = tf.nn.conv2d(x, tf.constant(op.w), strides, padding)
    return _act(tf, tf.nn.bias_add(y, tf.constant(op.b)), op.act)


def _global_pool(tf, x):
    h, w, c = int(x.shape[1]), int(x.shape[2]), int(x.shape[3])
    if h * w <= MEAN_MAX_PIXELS:
        return tf.reduce_mean(x, axis=[1, 2])
    return tf.reshape(tf.nn.avg_pool2d(x, [h, w], [h, w], "VALID"), [-1, c])


def apply_ops(tf, x, ops: list):
    for op in ops:
        if isinstance(op, Conv):
            x = _conv(tf, x, op)
        elif isinstance(op, Residual):
            skip = apply_ops(tf, x, op.shortcut)
            x = _act(tf, apply_ops(tf, x, op.main) + skip, op.act)
        elif isinstance(op, Mean):
            x = _global_pool(tf, x)
        elif isinstance(op, Dense):
            x = _act(tf, tf.matmul(x, tf.constant(op.w)) + tf.constant(op.b), op.act)
        elif isinstance(op, Act):
            x = _act(tf, x, op.act)
        else:
            raise InternalError(f"IR op {type(op).__name__} has no TensorFlow twin")
    return x


def segment_function(seg: SegmentIR):
    """Python callable x(NHWC float) -> {"logits", "features"} (features only for non-last segments)."""
    import tensorflow as tf

    def run(x):
        feats = apply_ops(tf, x, seg.body)
        logits = apply_ops(tf, feats, seg.head)
        return {"logits": logits} if seg.last else {"logits": logits, "features": feats}

    return run


def all_exits_function(segments: list[SegmentIR]):
    """Every segment chained in one function, every exit's logits an output: the last exit's as `logits`,
    earlier ones as `logits_<k>` (the monolithic baseline for what splitting into segments costs)."""
    import tensorflow as tf

    def run(x):
        outs = {}
        for k, seg in enumerate(segments):
            feats = apply_ops(tf, x, seg.body)
            outs["logits" if seg.last else f"logits_{k}"] = apply_ops(tf, feats, seg.head)
            x = feats
        return outs

    return run
