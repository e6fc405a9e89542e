"""`tinyexit export RUN_DIR`, `tinyexit verify RUN_DIR` and `tinyexit import MODEL.tflite ... --out RUN`."""
from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser("export", help="export a run's models to int8 ONNX / TFLite (one subgraph per exit) / C",
                       description="Export every trained model of RUN_DIR to RUN_DIR/export/<model>/: ONNX float and "
                                   "QDQ int8 per segment, a multi-signature full-int8 TFLite file, per-segment "
                                   "TFLite Micro files, the full network, manifest.json (and C sources).")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--formats", default="onnx,tflite,tflm,c",
                   help="comma-separated subset of onnx,tflite,tflm,c (TFLite files are always written: the "
                        "manifest is read from them; default: all)")
    p.add_argument("--models", default="", help="classifier,denoiser (default: every model the run holds)")
    p.add_argument("--calibration-samples", type=int, default=300, help="training images used for int8 ranges")
    p.add_argument("--threshold", type=float, default=None,
                   help="override the exit threshold training chose on val; the manifest records it as an override "
                        "(default: the run's chosen one, else 0.9 for an old checkpoint)")
    p.set_defaults(handler=_export)

    v = sub.add_parser("verify", help="run every exported artifact on the test split and compare runtimes",
                       description="Run torch float, ONNX Runtime float/int8, LiteRT int8 and TFLite Micro int8 on "
                                   "the test split; write RUN_DIR/export/verify.json (never the report); exit non-zero "
                                   "when an int8 exit drops too much accuracy or agrees too little with float.")
    v.add_argument("run_dir", metavar="RUN_DIR")
    v.add_argument("--models", default="", help="classifier,denoiser (default: every exported model)")
    v.add_argument("--max-drop", type=float, default=1.0, help="max int8 accuracy drop per exit, points (default 1)")
    v.add_argument("--min-agreement", type=float, default=0.99,
                   help="min top-1 agreement of int8 with torch float per exit (default 0.99)")
    v.add_argument("--samples", type=int, default=0, help="test samples to use (default 0 = all)")
    v.add_argument("--threshold", type=float, default=None, help="override the manifest's exit threshold")
    v.set_defaults(handler=_verify)

    i = sub.add_parser("import", help="turn your own full-int8 .tflite file(s) into an export bundle",
                       description="Check MODEL.tflite (several files: the segments of an early-exit model, in "
                                   "order) and write RUN/export/<name>/ (manifest.json, per-segment files, a "
                                   "multi-signature file, C sources, inputs.npz with --inputs), the same bundle "
                                   "'tinyexit export' writes: firmware, bench, report and check then work on RUN.")
    i.add_argument("models", nargs="+", metavar="MODEL.tflite")
    i.add_argument("--out", required=True, metavar="RUN", help="run directory (created if missing)")
    i.add_argument("--inputs", default=None, metavar="DATA.npz",
                   help="test inputs: x (N, H, W, C) NHWC, float (quantized with the model's input scale) or "
                        "int8 (used as is), optional y (N,) integer labels; without it bench uses seeded "
                        "random inputs and accuracy is absent")
    i.add_argument("--name", default="", help="bundle name and C symbol prefix (default: the first file's stem)")
    i.add_argument("--threshold", type=float, default=0.9,
                   help="max-softmax exit threshold of a multi-segment model (recorded as 'imported'; default 0.9)")
    i.set_defaults(handler=_import)

    s = sub.add_parser("bench-suite", help="benchmark suites on the emulated microcontroller (mlperf-tiny)",
                       description="mlperf-tiny: rebuild the four MLPerf Tiny reference architectures (seeded "
                                   "weights, int8 PTQ), import each into OUT, build the firmware, profile it under "
                                   "QEMU in both flash modes and write OUT/mlperf_tiny.md and .json (MACs, "
                                   "instructions, per-layer profile, arena, RAM, flash, bit-exactness).")
    s.add_argument("suite", choices=["mlperf-tiny"])
    s.add_argument("--out", required=True, metavar="DIR", help="run directory for the suite (created if missing)")
    s.add_argument("--models", default="ic01,kws01,vww01,ad01", help="comma list of ic01,kws01,vww01,ad01")
    s.add_argument("--file", action="append", default=[], metavar="ID=MODEL.tflite",
                   help="use your own int8 file for a model id instead of the seeded rebuild (repeatable)")
    s.add_argument("--kernels", default="arm_dsp", choices=["arm_dsp", "reference"])
    s.add_argument("--flash-modes", default="speed,size", help="comma list of speed,size (default both)")
    s.set_defaults(handler=_bench_suite)


def _export(args: argparse.Namespace) -> int:
    from tinyexit.export.config import ExportConfig
    from tinyexit.export.exporter import export_run

    export_run(args.run_dir, ExportConfig(formats=args.formats, models=args.models,
                                          calibration_samples=args.calibration_samples, threshold=args.threshold))
    return 0


def _import(args: argparse.Namespace) -> int:
    from tinyexit.export.import_tflite import ImportConfig, import_tflite

    import_tflite(args.models, args.out, ImportConfig(name=args.name, inputs=args.inputs, threshold=args.threshold))
    return 0


def _bench_suite(args: argparse.Namespace) -> int:
    from tinyexit.errors import UserError
    from tinyexit.export.mlperf_suite import SuiteConfig, run_suite

    files = {}
    for item in args.file:
        if "=" not in item:
            raise UserError(f"--file {item}: write ID=MODEL.tflite, e.g. ic01=pretrainedResnet_quant.tflite")
        key, path = item.split("=", 1)
        files[key] = path
    cfg = SuiteConfig(models=tuple(m for m in args.models.split(",") if m), files=files, kernels=args.kernels,
                      flash_modes=tuple(m for m in args.flash_modes.split(",") if m))
    run_suite(args.out, cfg)
    return 0


def _verify(args: argparse.Namespace) -> int:
    from tinyexit.export.config import VerifyConfig
    from tinyexit.export.verify import verify_run

    result = verify_run(args.run_dir, VerifyConfig(max_drop_points=args.max_drop, min_agreement=args.min_agreement,
                                                   models=args.models, samples=args.samples,
                                                   threshold=args.threshold))
    return 0 if result["passed"] else 1
