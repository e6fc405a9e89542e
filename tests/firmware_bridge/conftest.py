"""Fixtures for firmware_bridge tests: a genuine exported artifact, built with TensorFlow.

Until `tinyexit export` lands, `fixture_run` is a run directory holding what the
export stage writes for the classifier (docs/artifacts.md): a multi-signature
int8 TFLite (exit0, exit1, exit2), the monolithic full-depth int8 TFLite, the
all-exits monolithic int8 TFLite (every head in one subgraph), manifest.json
(schema version 1, the exit policy with its provenance) and inputs.npz (the
quantized test split, listed under "inputs").  The network is a small three-segment CNN on
digits: fixed random convolutions with least-squares exit heads (seeded), so
exits differ in confidence and early exit sends samples down every path.
TensorFlow is used here only; firmware_bridge itself never imports it.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

SEED = 20240611
STAGES = ((8, 1), (16, 2), (32, 2))  # (channels, stride) of each segment's conv
HIDDEN = 16                          # 1x1 conv width in each exit head


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images.astype(np.float32) / 16.0)[..., None]  # NHWC
    return x, d.target.astype(np.int64)


def _weights(rng):
    w, c_in = [], 1
    for c, _ in STAGES:
        w.append({"conv": rng.normal(0, np.sqrt(2 / (9 * c_in)), (3, 3, c_in, c)).astype(np.float32),
                  "bias": rng.normal(0, 0.05, c).astype(np.float32),
                  "pre": rng.normal(0, np.sqrt(2 / c), (1, 1, c, HIDDEN)).astype(np.float32)})
        c_in = c
    return w


def build_artifact(run_dir: Path) -> Path:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    rng = np.random.default_rng(SEED)
    x_all, y_all = _digits()
    x_tr, y_tr, x_val, x_te, y_te = x_all[:1000], y_all[:1000], x_all[1000:1350], x_all[1350:], y_all[1350:]
    W = _weights(rng)

    def body(k, x):
        return tf.nn.relu(tf.nn.conv2d(x, W[k]["conv"], STAGES[k][1], "SAME") + W[k]["bias"])

    def pooled(k, f):
        return tf.reduce_mean(tf.nn.relu(tf.nn.conv2d(f, W[k]["pre"], 1, "SAME")), [1, 2])

    # Least-squares heads on the float features: a few lines instead of a training loop.
    feats, f = [], tf.constant(x_tr)
    for k in range(3):
        f = body(k, f)
        p = pooled(k, f).numpy()
        a = np.c_[p, np.ones(len(p))]
        target = np.eye(10)[y_tr] * 8 - 4
        sol = np.linalg.lstsq(a.T @ a + 1e-2 * np.eye(a.shape[1]), a.T @ target, rcond=None)[0]
        W[k]["fc"], W[k]["fc_b"] = sol[:-1].astype(np.float32), sol[-1].astype(np.float32)

    def head(k, f):
        return tf.matmul(pooled(k, f), W[k]["fc"]) + W[k]["fc_b"]

    shapes = [(1, 8, 8, 1), (1, 8, 8, 8), (1, 4, 4, 16)]

    class Segments(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec(shapes[0], tf.float32, name="x")])
        def exit0(self, x):
            f = body(0, x)
            return {"logits": head(0, f), "features": f}

        @tf.function(input_signature=[tf.TensorSpec(shapes[1], tf.float32, name="x")])
        def exit1(self, x):
            f = body(1, x)
            return {"logits": head(1, f), "features": f}

        @tf.function(input_signature=[tf.TensorSpec(shapes[2], tf.float32, name="x")])
        def exit2(self, x):
            return {"logits": head(2, body(2, x))}

    class AllExits(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec(shapes[0], tf.float32, name="x")])
        def all_exits(self, x):
            f0 = body(0, x)
            f1 = body(1, f0)
            return {"logits_0": head(0, f0), "logits_1": head(1, f1), "logits": head(2, body(2, f1))}

    class Full(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec(shapes[0], tf.float32, name="x")])
        def serving_default(self, x):
            return {"logits": head(2, body(2, body(1, body(0, x))))}

    calib = x_tr[rng.choice(len(x_tr), 64, replace=False)][:, None]
    f0 = [body(0, c).numpy() for c in calib]
    f1 = [body(1, c).numpy() for c in f0]

    def rep_segments():
        for a, b, c in zip(calib, f0, f1):
            yield "exit0", {"x": a}
            yield "exit1", {"x": b}
            yield "exit2", {"x": c}

    def rep_full():
        for a in calib:
            yield {"x": a}

    seg_mod, full_mod = Segments(), Full()
    seg_bytes = _convert(tf, [seg_mod.exit0.get_concrete_function(), seg_mod.exit1.get_concrete_function(),
                              seg_mod.exit2.get_concrete_function()], seg_mod, rep_segments)
    full_bytes = _convert(tf, [full_mod.serving_default.get_concrete_function()], full_mod, rep_full)
    all_mod = AllExits()
    all_bytes = _convert(tf, [all_mod.all_exits.get_concrete_function()], all_mod, rep_full)
    out = run_dir / "export" / "classifier"
    out.mkdir(parents=True, exist_ok=True)
    (out / "classifier.int8.tflite").write_bytes(seg_bytes)
    (out / "classifier.full.int8.tflite").write_bytes(full_bytes)
    (out / "classifier.all_exits.int8.tflite").write_bytes(all_bytes)
    manifest = _manifest(out, x_val)
    from tinyexit.bundle import INPUTS_FILE, SCHEMA_VERSION, TensorSpec, quantize

    # The bundle carries its own quantized test split (schema 1): the bench never reloads the data set.
    spec = TensorSpec.from_dict(manifest["input"])
    np.savez(out / INPUTS_FILE, x=quantize(x_te, spec), y=y_te)
    manifest["schema_version"] = SCHEMA_VERSION
    manifest["inputs"] = {**_file(out, out / INPUTS_FILE), "n": int(len(x_te)), "labels": True,
                          "timesteps": False, "source": "test split of digits"}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    (run_dir / "config.json").write_text(json.dumps(
        {"tinyexit_version": "0.1.0", "classifier": {"dataset": "digits", "data_dir": None}}))
    return run_dir


def _convert(tf, funcs, module, rep):
    import warnings

    conv = tf.lite.TFLiteConverter.from_concrete_functions(funcs, module)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = rep
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the converter's calibrator still uses the deprecated tf.lite.Interpreter
        return conv.convert()


def _tensor(name, d):
    q = d["quantization"]
    return {"name": name, "shape": [int(v) for v in d["shape"]], "dtype": "int8", "scale": float(q[0]),
            "zero_point": int(q[1])}


def _manifest(out: Path, x_val: np.ndarray) -> dict:
    from ai_edge_litert.interpreter import Interpreter

    from tinyexit.bundle import TensorSpec, dequantize, quantize
    from tinyexit.exit_policy import max_softmax

    tfl = out / "classifier.int8.tflite"
    full = out / "classifier.full.int8.tflite"
    interp = Interpreter(model_path=str(tfl))
    segments, macs, c_in, hw = [], [], 1, 8
    for k, (c, stride) in enumerate(STAGES):
        r = interp.get_signature_runner(f"exit{k}")
        ins, outs = r.get_input_details(), r.get_output_details()
        hw_out = hw // stride
        seg_macs = hw_out * hw_out * c * 9 * c_in + hw_out * hw_out * HIDDEN * c + HIDDEN * 10
        macs.append(seg_macs)
        segments.append({"index": k, "signature": f"exit{k}", "files": {},
                         "inputs": [_tensor("x", ins["x"])],
                         "outputs": [_tensor(n, outs[n]) for n in ("logits", "features") if n in outs],
                         "param_bytes": 9 * c_in * c + c * HIDDEN + HIDDEN * 10, "macs": seg_macs,
                         "ops": [{"type": "CONV_2D", "macs": hw_out * hw_out * c * 9 * c_in}]})
        c_in, hw = c, hw_out
    full_macs = sum(macs) - sum(HIDDEN * c * (8 // s) ** 2 + HIDDEN * 10 for c, s in STAGES[:2])
    cum = np.cumsum(macs)
    in_spec = segments[0]["inputs"][0]
    # Threshold at the 40th percentile of exit-0 confidence on val: every exit path gets samples.
    r0 = interp.get_signature_runner("exit0")
    lspec = TensorSpec.from_dict(segments[0]["outputs"][0])
    conf = [max_softmax(dequantize(r0(x=quantize(v[None], TensorSpec.from_dict(in_spec)))["logits"], lspec))[0]
            for v in x_val]
    threshold = float(np.float32(np.percentile(conf, 40)))
    files = {"tflite": _file(out, tfl), "full_tflite": _file(out, full),
             "all_exits_tflite": _file(out, out / "classifier.all_exits.int8.tflite")}
    digest = hashlib.sha256((files["tflite"]["sha256"] + files["full_tflite"]["sha256"]).encode()).hexdigest()
    return {"tinyexit_version": "0.1.0", "model": "classifier", "artifact_hash": digest, "layout": "NHWC",
            "input": in_spec, "float_input_range": [0.0, 1.0], "files": files, "segments": segments,
            "exits": [{"index": k, "cumulative_macs": int(cum[k]), "mac_ratio": float(cum[k] / full_macs)}
                      for k in range(len(STAGES))],
            "full_macs": int(full_macs), "policy": {"name": "max_softmax", "params": [threshold],
                       "provenance": {"source": "chosen at training", "split": "val",
                                      "rule": "40th percentile of exit-0 confidence", "chosen_value": None}},
            "note": "test fixture built by tests/firmware_bridge/conftest.py"}


def _file(out: Path, path: Path) -> dict:
    return {"path": path.name, "sha256": _sha(path), "bytes": path.stat().st_size}


@pytest.fixture(scope="session")
def fixture_run_template(tmp_path_factory) -> Path:
    return build_artifact(tmp_path_factory.mktemp("fixture_run"))


@pytest.fixture
def fixture_run(fixture_run_template, tmp_path) -> Path:
    """A fresh copy per test, so tests may write bench/ or damage files."""
    dst = tmp_path / "run"
    shutil.copytree(fixture_run_template, dst)
    return dst


@pytest.fixture
def artifact_dir(fixture_run) -> Path:
    return fixture_run / "export" / "classifier"


@pytest.fixture
def spawn_agent(tmp_path):
    """Start `tinyexit agent` processes on given ports; every one is stopped at the end of the test."""
    import subprocess
    import sys

    procs = []

    def start(port: str, artifact: Path, *extra: str):
        log = open(tmp_path / f"agent-{len(procs)}.log", "wb")
        proc = subprocess.Popen([sys.executable, "-m", "tinyexit", "agent", "--port", port, "--artifact",
                                 str(artifact), *extra], stdout=log, stderr=log)
        procs.append((proc, log))
        return proc

    yield start
    for proc, log in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        log.close()
