"""Small full-int8 .tflite files for the int8/codegen/kernel/firmware tests, built with TensorFlow.

Not a test module: test files import it under one sys.modules key
(imported once as helpers.tflite_models) so one cache serves a whole pytest session.  Weights and calibration data use fixed seeds.  Models:
  op graphs  - every kernel at least once (per-channel CONV_2D with SAME/VALID,
               stride 2, dilation, explicit PAD, DEPTHWISE with multiplier 2,
               FULLY_CONNECTED per-channel and per-tensor, ADD with rescaling,
               MEAN, AVERAGE_POOL_2D, LOGISTIC, RELU/RELU6 clamps);
  chain      - a 3-segment early-exit ResNet shaped like tinyexit's classifier,
               one file per segment, boundary quantization unified as export does.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

def _tf():
    import os
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf
    return tf


def _convert(fn, rep, per_tensor_fc=False) -> bytes:
    tf = _tf()
    conv = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], fn)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([r] for r in rep)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    if per_tensor_fc:
        conv._experimental_disable_per_channel_quantization_for_dense_layers = True
    return conv.convert()


def _w(rng, shape, scale=0.3):
    return rng.normal(0.0, scale, shape).astype(np.float32)


@lru_cache(maxsize=None)
def op_models() -> dict[str, bytes]:
    tf = _tf()
    rng = np.random.default_rng(1234)
    out = {}
    c1, c2, c3, cs, b1 = _w(rng, (3, 3, 3, 8)), _w(rng, (3, 3, 8, 8)), _w(rng, (3, 3, 8, 16)), \
        _w(rng, (1, 1, 3, 8)), _w(rng, (8,), 0.1)
    fc, fcb = _w(rng, (16, 10)), _w(rng, (10,), 0.1)

    @tf.function(input_signature=[tf.TensorSpec([1, 8, 8, 3], tf.float32)])
    def conv_block(x):
        y = tf.nn.relu(tf.nn.conv2d(x, c1, 1, "SAME") + b1)
        y = tf.nn.conv2d(y, c2, 1, "SAME", dilations=2)
        y = tf.nn.relu6(y + 2.0 * tf.nn.conv2d(x, cs, 1, "SAME"))
        y = tf.pad(y, [[0, 0], [1, 1], [1, 1], [0, 0]])
        y = tf.nn.relu(tf.nn.conv2d(y, c3, 2, "VALID"))
        return {"a_features": y, "b_logits": tf.matmul(tf.reduce_mean(y, axis=[1, 2]), fc) + fcb}

    out["conv_block"] = _convert(conv_block, [rng.uniform(0, 1, (1, 8, 8, 3)).astype(np.float32)
                                              for _ in range(40)])
    dw, dwb = _w(rng, (3, 3, 4, 2)), _w(rng, (8,), 0.1)

    @tf.function(input_signature=[tf.TensorSpec([1, 9, 9, 4], tf.float32)])
    def dw_pool(x):
        y = tf.nn.relu(tf.nn.depthwise_conv2d(x, dw, [1, 2, 2, 1], "SAME") + dwb)
        p = tf.nn.avg_pool2d(y, 3, 2, "SAME")
        return {"a_pool": p, "b_sigmoid": tf.sigmoid(tf.reduce_mean(y, [1, 2], keepdims=True))}

    out["dw_pool"] = _convert(dw_pool, [rng.normal(0, 1, (1, 9, 9, 4)).astype(np.float32) for _ in range(40)])
    f1, f1b, f2 = _w(rng, (24, 12)), _w(rng, (12,), 0.1), _w(rng, (12, 5))

    @tf.function(input_signature=[tf.TensorSpec([1, 24], tf.float32)])
    def fc_tensor(x):
        return tf.matmul(tf.nn.relu(tf.matmul(x, f1) + f1b), f2)

    out["fc_tensor"] = _convert(fc_tensor, [rng.normal(0, 1, (1, 24)).astype(np.float32) for _ in range(40)],
                                per_tensor_fc=True)

    @tf.function(input_signature=[tf.TensorSpec([1, 256], tf.float32)])
    def logistic(x):
        return tf.sigmoid(x)

    out["logistic"] = _convert(logistic, [rng.uniform(-9, 7, (1, 256)).astype(np.float32) for _ in range(20)])
    return out


def _block(tf, x, w1, w2, ws, stride):
    """BasicBlock as tinyexit exports it: explicit pad for stride 2, add then ReLU."""
    if stride == 2:
        y = tf.nn.conv2d(tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]]), w1, 2, "VALID")
    else:
        y = tf.nn.conv2d(x, w1, 1, "SAME")
    y = tf.nn.conv2d(tf.nn.relu(y), w2, 1, "SAME")
    skip = x if ws is None else tf.nn.conv2d(x, ws, stride, "VALID")
    return tf.nn.relu(y + skip)


@lru_cache(maxsize=None)
def chain_models() -> list[bytes]:
    """Three segments: 8x8x1 -> (logits, 8x8x8) -> (logits, 4x4x16) -> logits."""
    tf = _tf()
    rng = np.random.default_rng(99)
    p = {"stem": _w(rng, (3, 3, 1, 8)), "a1": _w(rng, (3, 3, 8, 8), 0.2), "a2": _w(rng, (3, 3, 8, 8), 0.2),
         "h0": _w(rng, (1, 1, 8, 16)), "f0": _w(rng, (16, 10)), "b1": _w(rng, (3, 3, 8, 16), 0.2),
         "b2": _w(rng, (3, 3, 16, 16), 0.15), "bs": _w(rng, (1, 1, 8, 16)), "f1": _w(rng, (16, 10)),
         "c1": _w(rng, (3, 3, 16, 32), 0.15), "c2": _w(rng, (3, 3, 32, 32), 0.1), "cs": _w(rng, (1, 1, 16, 32)),
         "f2": _w(rng, (32, 10)), "fb": _w(rng, (10,), 0.1)}

    @tf.function(input_signature=[tf.TensorSpec([1, 8, 8, 1], tf.float32)])
    def seg0(x):
        f = _block(tf, tf.nn.relu(tf.nn.conv2d(x, p["stem"], 1, "SAME")), p["a1"], p["a2"], None, 1)
        h = tf.nn.relu(tf.nn.conv2d(f, p["h0"], 1, "SAME"))
        return {"logits": tf.matmul(tf.reduce_mean(h, [1, 2]), p["f0"]) + p["fb"], "features": f}

    @tf.function(input_signature=[tf.TensorSpec([1, 8, 8, 8], tf.float32)])
    def seg1(x):
        f = _block(tf, x, p["b1"], p["b2"], p["bs"], 2)
        return {"logits": tf.matmul(tf.reduce_mean(f, [1, 2]), p["f1"]), "features": f}

    @tf.function(input_signature=[tf.TensorSpec([1, 4, 4, 16], tf.float32)])
    def seg2(x):
        f = _block(tf, x, p["c1"], p["c2"], p["cs"], 2)
        return tf.matmul(tf.reduce_mean(f, [1, 2]), p["f2"]) + p["fb"]

    xs = [rng.uniform(0, 1, (1, 8, 8, 1)).astype(np.float32) for _ in range(40)]
    blobs = []
    for fn in (seg0, seg1, seg2):
        blobs.append(_convert(fn, xs))
        if fn is not seg2:
            xs = [fn(x)["features"].numpy() for x in xs]
    for k in range(2):  # unify each boundary: the next input takes the features' parameters
        blobs[k + 1] = _set_input_qparams(blobs[k + 1], *_output_qparams(blobs[k], "features"))
    return blobs


def _schema():
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as fb
    return fb


def _output_qparams(blob: bytes, name: str):
    fb = _schema()
    m = fb.ModelT.InitFromObj(fb.Model.GetRootAsModel(blob, 0))
    sg = m.subgraphs[0]
    outs = [sg.tensors[i] for i in sg.outputs]
    t = next((t for t in outs if name in t.name.decode()), max(outs, key=lambda t: len(t.shape)))
    return np.array(t.quantization.scale, np.float32), np.array(t.quantization.zeroPoint, np.int64)


def _set_input_qparams(blob: bytes, scale, zp) -> bytes:
    import flatbuffers
    fb = _schema()
    m = fb.ModelT.InitFromObj(fb.Model.GetRootAsModel(blob, 0))
    t = m.subgraphs[0].tensors[m.subgraphs[0].inputs[0]]
    t.quantization.scale, t.quantization.zeroPoint = scale, zp
    b = flatbuffers.Builder(len(blob) + 1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def tflm_run(blob: bytes, inputs: list[np.ndarray]) -> list[list[np.ndarray]]:
    """TensorFlow Lite Micro's outputs for each input (the bit-exactness oracle)."""
    from tflite_micro.python.tflite_micro import runtime
    it = runtime.Interpreter.from_bytes(blob, arena_size=256 * 1024)
    n_out = len(_schema().Model.GetRootAsModel(blob, 0).Subgraphs(0).OutputsAsNumpy())
    res = []
    for x in inputs:
        it.set_input(np.asarray(x, np.int8), 0)
        it.invoke()
        res.append([it.get_output(i).copy() for i in range(n_out)])
    return res


def random_inputs(shape, n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(-128, 128, shape, dtype=np.int64).astype(np.int8) for _ in range(n)]


def host_runner(tmp: Path, blobs: list[bytes], kernels: str, name: str = "tm"):
    """generate_c + the host tier build for `blobs` -> (HostRunner, CSources)."""
    from tinyexit.export.codegen import CodegenConfig, generate_c
    from tinyexit.firmware_bridge.firmware.host import HostRunner, build_host_runner

    src = generate_c(blobs, CodegenConfig(model_name=name))
    c_dir = src.write(Path(tmp) / f"c_{name}")
    flags = ("-DTE_EMULATE_DSP",) if kernels == "arm_dsp" else ()
    exe = build_host_runner(c_dir, name, Path(tmp) / f"runner_{name}_{kernels}", kernels, extra_flags=flags)
    return HostRunner(exe, src.segments), src


def split_outputs(outs: list[np.ndarray], seg: dict) -> tuple[np.ndarray, np.ndarray | None]:
    """(logits, features) of one TFLM invocation, matched by shape to the codegen segment row."""
    logits = next(o for o in outs if list(o.shape) == seg["logits_shape"])
    rest = [o for o in outs if o is not logits]
    return logits.ravel(), (rest[0].ravel() if rest else None)


def fake_run(tmp: Path, blobs: list[bytes], model: str = "tm", n_inputs: int = 40, seed: int = 4,
             with_c: bool = True) -> Path:
    """A run directory holding only what the firmware stages read: the bundle export/<model>/{tflm/,
    manifest.json, inputs.npz, c/ (unless `with_c` is False)} for the given per-segment files (no checkpoints,
    no multi-signature file), readable by tinyexit.bundle.load_bundle(verify=True)."""
    import hashlib
    import json

    from tinyexit import __version__
    from tinyexit.bundle import INPUTS_FILE, SCHEMA_VERSION
    from tinyexit.export.codegen_lower import read_segment
    from tinyexit.rundir import sha256_file

    run = Path(tmp) / "run"
    mdir = run / "export" / model
    (mdir / "tflm").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"tinyexit_version": __version__}))

    segs = []
    for k, blob in enumerate(blobs):
        rel = f"tflm/segment_{k}.int8.tflite"
        (mdir / rel).write_bytes(blob)
        g = read_segment(blob)
        outs = sorted((g.tensors[i] for i in g.outputs), key=lambda t: t.nbytes)  # logits are the smaller
        segs.append({"index": k, "signature": f"exit{k}",
                     "files": {"tflm": {"path": rel, "sha256": hashlib.sha256(blob).hexdigest(), "bytes": len(blob)}},
                     "inputs": [g.tensors[g.inputs[0]].io_dict("x")],
                     "outputs": [outs[0].io_dict("logits")] + ([outs[1].io_dict("features")] if len(outs) > 1 else []),
                     "macs": g.macs})
    digest = hashlib.sha256("".join(s["files"]["tflm"]["sha256"] for s in segs).encode()).hexdigest()
    total = sum(s["macs"] for s in segs)
    cum = np.cumsum([s["macs"] for s in segs]).tolist()
    x = np.stack(random_inputs(segs[0]["inputs"][0]["shape"], n_inputs, seed))[:, 0]
    np.savez(mdir / INPUTS_FILE, x=x, y=np.zeros(len(x), np.int64))
    inputs = {"path": INPUTS_FILE, "sha256": sha256_file(mdir / INPUTS_FILE), "bytes": (mdir / INPUTS_FILE).stat().st_size,
              "n": len(x), "labels": True, "timesteps": False, "source": "seeded random (tests)"}
    manifest = {"tinyexit_version": __version__, "schema_version": SCHEMA_VERSION, "model": model,
                "artifact_hash": digest, "layout": "NHWC", "input": segs[0]["inputs"][0], "files": {},
                "segments": segs, "policy": None, "inputs": inputs, "full_macs": total,
                "exits": [{"index": k, "cumulative_macs": c, "mac_ratio": c / total} for k, c in enumerate(cum)]}
    (mdir / "manifest.json").write_text(json.dumps(manifest, indent=1))
    if with_c:  # as 'tinyexit export --formats c' does: the firmware build consumes c/, it does not generate it
        from tinyexit.export.codegen import generate_c_for_run
        generate_c_for_run(run, model)
    return run


@lru_cache(maxsize=None)
def denoiser_models() -> list[bytes]:
    """Two segments shaped like the denoiser: (1,8,8,2) -> per-pixel logits (1,8,8,1) (+ features)."""
    tf = _tf()
    rng = np.random.default_rng(7)
    w0, h0, w1, h1 = _w(rng, (3, 3, 2, 8)), _w(rng, (1, 1, 8, 1)), _w(rng, (3, 3, 8, 8), 0.2), _w(rng, (1, 1, 8, 1))

    @tf.function(input_signature=[tf.TensorSpec([1, 8, 8, 2], tf.float32)])
    def seg0(x):
        f = tf.nn.relu(tf.nn.conv2d(x, w0, 1, "SAME"))
        return {"logits": tf.nn.conv2d(f, h0, 1, "SAME"), "features": f}

    @tf.function(input_signature=[tf.TensorSpec([1, 8, 8, 8], tf.float32)])
    def seg1(x):
        return tf.nn.conv2d(tf.nn.relu(tf.nn.conv2d(x, w1, 1, "SAME")), h1, 1, "SAME")

    xs = [np.concatenate([rng.choice([-1.0, 1.0], (1, 8, 8, 1)), np.full((1, 8, 8, 1), rng.uniform(0, 1))],
                         axis=-1).astype(np.float32) for _ in range(40)]
    b0 = _convert(seg0, xs)
    b1 = _convert(seg1, [seg0(x)["features"].numpy() for x in xs])
    return [b0, _set_input_qparams(b1, *_output_qparams(b0, "features"))]


def denoiser_constants(T: int = 6, seed: int = 3) -> dict:
    """A manifest "denoiser" section (models/denoiser.py device_constants layout) with made-up numbers."""
    rng = np.random.default_rng(seed)
    p = lambda: rng.uniform(0.05, 0.95, T).tolist()  # noqa: E731
    return {"T": T, "timestep_encoding": {"kind": "constant_plane", "channel": 1, "values": (np.arange(1, T + 1) / T).tolist()},
            "mixing": {"A_y_neg": p(), "A_y_pos": p(), "B_y_neg": p(), "B_y_pos": p()},
            "logits": {"prior_residual": True, "marginal_logits": rng.normal(0, 1, 64).tolist(),
                       "observation_log_odds": rng.uniform(0, 2, T).tolist()},
            "prior_exit": {"index": -1}, "prior_residual": True,
            "exit_schedule": {"per_step": [0, 1, -1, 1, 0, 1][:T]}}


def assert_qemu_matches_tflm(tmp: Path, blob: bytes, shape: tuple, flash_mode: str, label: str = "") -> None:
    """The one-segment model `blob` in firmware of `flash_mode` under QEMU, over the serial protocol: its
    outputs for 8 inputs of `shape` (the first all -128, the second all 127) equal TensorFlow Lite Micro's."""
    from tinyexit.firmware_bridge.firmware.build import FirmwareConfig, build_firmware
    from tinyexit.firmware_bridge.harness.link import SerialLink
    from tinyexit.firmware_bridge.harness.qemu import start_qemu
    from tinyexit.firmware_bridge.harness.session import DeviceSession
    from tinyexit.firmware_bridge.protocol import constants as pc
    from tinyexit.firmware_bridge.protocol import messages as m

    run = fake_run(tmp, [blob], n_inputs=8)
    rep = build_firmware(run, "tm", FirmwareConfig(flash_mode=flash_mode, verify=False), log=lambda msg: None)
    xs = random_inputs(shape, 8, seed=5)
    xs[0] = np.full_like(xs[0], -128)
    xs[1] = np.full_like(xs[1], 127)
    want = np.stack([o[0].ravel() for o in tflm_run(blob, xs)])
    url, handle = start_qemu(Path(rep["elf"]), Path(rep["elf"]).parent / "qemu.log")
    try:
        link = SerialLink(url, 115200)
        s = DeviceSession(link)
        s.handshake(10)
        for k, x in enumerate(xs):
            assert s.load(0, x.tobytes(), 1020) == x.nbytes
            res = s.run(m.Run(pc.MODE_SEGMENT, 0, 0, (), 1, 0))
            np.testing.assert_array_equal(res.logits, want[k], err_msg=f"{label} {flash_mode} input {k}")
        link.close()
    finally:
        handle.close()
