"""Stage export: a run's checkpoints -> verified int8 artifacts with one subgraph per exit.

Main flow (entry `exporter.export_run(run_dir, ExportConfig)`, CLI `tinyexit export RUN_DIR`):
  families      which checkpoint, data and manifest additions each model family has
  lower         torch segment -> export IR (BatchNorm folded, NHWC/HWIO weights)
  tf_mirror     IR -> raw TF ops;  tflite_convert  SavedModel (one signature per segment) -> full-int8 TFLite
  boundary      names x/logits/features, bit-identical boundary quantization (in-place post-pass)
  onnx_export   per-segment ONNX float + static QDQ int8 (boundary pinned by TensorQuantOverrides)
  manifest      manifest.json (schema_version 1, read back by tinyexit.bundle): files, hashes, tensors,
                MACs counted from the graph (tflite_graph), the exit policy with its provenance, inputs.npz
  codegen*      C sources from the per-segment files (`--formats c`)
Verification (entry `verify.verify_run(run_dir, VerifyConfig)`, CLI `tinyexit verify RUN_DIR`):
  runtimes      torch / ONNX Runtime / LiteRT / TFLite Micro chains through int8 boundaries
  quiet         TensorFlow / absl banners off before TensorFlow's first import
Heavy libraries (TensorFlow, torch, ONNX) are imported inside functions only.
"""


def export_run(run_dir, cfg=None, progress=print) -> dict:
    """See tinyexit.export.exporter.export_run."""
    from tinyexit.export.config import ExportConfig
    from tinyexit.export.exporter import export_run as _export_run

    return _export_run(run_dir, cfg or ExportConfig(), progress)


def verify_run(run_dir, cfg=None, progress=print) -> dict:
    """See tinyexit.export.verify.verify_run."""
    from tinyexit.export.config import VerifyConfig
    from tinyexit.export.verify import verify_run as _verify_run

    return _verify_run(run_dir, cfg or VerifyConfig(), progress)
