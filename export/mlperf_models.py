"""The four MLPerf Tiny v1 reference architectures, rebuilt in Keras from their published layer lists,
with seeded weights and int8 post-training quantization on seeded data.

They are stand-ins of the right shape and cost (layer types, strides, channel counts, MACs, parameter
count) for the trained reference files, not trained models: tests and `tinyexit bench-suite
mlperf-tiny` use them to measure the generated firmware at MLPerf Tiny scale.  The layer lists follow
mlcommons/tiny `benchmark/training/*/keras_model.py` (names in MODELS are the runner's model ids):

  ic01  ResNet-8 (image classification, CIFAR-10 32x32x3): conv16; three residual stacks of two 3x3
        convs (16, 32 s2, 64 s2; 1x1 stride-2 shortcuts when the shape changes); 8x8 average pool; FC 10.
  kws01 DS-CNN (keyword spotting, 49x10x1 MFCC): conv 64 10x4 s2; four depthwise 3x3 + pointwise 64
        blocks; 25x5 average pool; FC 12.
  vww01 MobileNetV1 alpha 0.25 (visual wake words, 96x96x3): conv 8 s2; 13 depthwise + pointwise blocks
        (16, 32 s2, 32, 64 s2, 64, 128 s2, 5x 128, 256 s2, 256); 3x3 average pool; FC 2.
  ad01  FC autoencoder (anomaly detection, 640 log-mel inputs): FC 128 x4, FC 8, FC 128 x4, FC 640.

Batch normalization is folded by the converter, as in the reference files; classifiers end in a
softmax, as the reference files do.  Every input has batch size 1, so the files hold RESHAPE (not the
SHAPE/PACK ops a dynamic batch produces).
"""
from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class MlperfModel:
    model_id: str                    # the MLPerf Tiny runner's name (m-model-<id>)
    title: str
    input_shape: tuple[int, ...]     # without the batch axis
    float_range: tuple[float, float]  # where the seeded calibration / test data live
    build: str                       # builder function name below


MODELS = {
    "ic01": MlperfModel("ic01", "ResNet-8 (image classification)", (32, 32, 3), (0.0, 1.0), "_resnet8"),
    "kws01": MlperfModel("kws01", "DS-CNN (keyword spotting)", (49, 10, 1), (-4.0, 4.0), "_dscnn"),
    "vww01": MlperfModel("vww01", "MobileNetV1 0.25 (visual wake words)", (96, 96, 3), (0.0, 1.0), "_mobilenet"),
    "ad01": MlperfModel("ad01", "FC autoencoder (anomaly detection)", (640,), (-3.0, 3.0), "_autoencoder"),
}


def _tf():
    import os
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf
    return tf


def _bn_relu(tf, y, relu=True):
    y = tf.keras.layers.BatchNormalization()(y)
    return tf.keras.layers.Activation("relu")(y) if relu else y


def _resnet8(tf, inp):
    L = tf.keras.layers
    x = _bn_relu(tf, L.Conv2D(16, 3, padding="same")(inp))
    for filters, stride in ((16, 1), (32, 2), (64, 2)):
        y = _bn_relu(tf, L.Conv2D(filters, 3, strides=stride, padding="same")(x))
        y = _bn_relu(tf, L.Conv2D(filters, 3, padding="same")(y), relu=False)
        if stride != 1:
            x = L.Conv2D(filters, 1, strides=stride, padding="same")(x)
        x = L.Activation("relu")(L.Add()([x, y]))
    x = L.AveragePooling2D(pool_size=x.shape[1:3])(x)
    return L.Softmax()(L.Dense(10)(L.Flatten()(x)))


def _dscnn(tf, inp):
    L = tf.keras.layers
    x = _bn_relu(tf, L.Conv2D(64, (10, 4), strides=(2, 2), padding="same")(inp))
    for _ in range(4):
        x = _bn_relu(tf, L.DepthwiseConv2D(3, padding="same")(x))
        x = _bn_relu(tf, L.Conv2D(64, 1, padding="same")(x))
    x = L.AveragePooling2D(pool_size=x.shape[1:3])(x)
    return L.Softmax()(L.Dense(12)(L.Flatten()(x)))


def _mobilenet(tf, inp, alpha=0.25):
    L = tf.keras.layers
    x = _bn_relu(tf, L.Conv2D(int(32 * alpha), 3, strides=2, padding="same")(inp))
    blocks = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [(1024, 2), (1024, 1)]
    for filters, stride in blocks:
        x = _bn_relu(tf, L.DepthwiseConv2D(3, strides=stride, padding="same")(x))
        x = _bn_relu(tf, L.Conv2D(int(filters * alpha), 1, padding="same")(x))
    x = L.AveragePooling2D(pool_size=x.shape[1:3])(x)
    return L.Softmax()(L.Dense(2)(L.Flatten()(x)))


def _autoencoder(tf, inp):
    L = tf.keras.layers
    x = inp
    for units in (128, 128, 128, 128, 8, 128, 128, 128, 128):
        x = _bn_relu(tf, L.Dense(units)(x))
    return L.Dense(640)(x)


def keras_model(model_id: str, seed: int = 0):
    """The float Keras model with seeded weights and seeded batch-norm statistics."""
    spec = MODELS[model_id]
    tf = _tf()
    tf.keras.utils.set_random_seed(seed)
    inp = tf.keras.Input(spec.input_shape, batch_size=1)
    model = tf.keras.Model(inp, globals()[spec.build](tf, inp), name=model_id)
    rng = np.random.default_rng(seed + 1)
    for layer in model.layers:  # non-trivial folded scales, as after training
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape).astype(np.float32),
                               rng.normal(0.0, 0.1, beta.shape).astype(np.float32),
                               rng.normal(0.0, 0.1, mean.shape).astype(np.float32),
                               rng.uniform(0.5, 1.5, var.shape).astype(np.float32)])
    return model


def seeded_data(model_id: str, n: int, seed: int) -> np.ndarray:
    spec = MODELS[model_id]
    lo, hi = spec.float_range
    return np.random.default_rng(seed).uniform(lo, hi, (n, *spec.input_shape)).astype(np.float32)


def int8_tflite(model_id: str, seed: int = 0, calibration: int = 64) -> bytes:
    """Full-int8 TFLite (int8 input and output), post-training quantized on seeded data."""
    tf = _tf()
    model = keras_model(model_id, seed)
    rep = seeded_data(model_id, calibration, seed + 2)
    from tinyexit.export.tflite_convert import full_int8

    conv = full_int8(tf, tf.lite.TFLiteConverter.from_keras_model(model), lambda: ([x[None]] for x in rep))
    with contextlib.redirect_stdout(io.StringIO()):  # Keras prints its saved-artifact summary
        return conv.convert()


def write_model(model_id: str, out_dir: str | Path, seed: int = 0, n_inputs: int = 20) -> tuple[Path, Path]:
    """<out_dir>/<id>.int8.tflite and <id>_inputs.npz (seeded float x, no labels) for `tinyexit import`."""
    from tinyexit.export.quiet import quiet_tensorflow

    quiet_tensorflow()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{model_id}.int8.tflite"
    path.write_bytes(int8_tflite(model_id, seed))
    npz = out / f"{model_id}_inputs.npz"
    with open(npz, "wb") as f:
        np.savez(f, x=seeded_data(model_id, n_inputs, seed + 3))
    return path, npz
