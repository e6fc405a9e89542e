"""tinyexit: early-exit networks from training to measured numbers on edge devices.

The flow (one entry function per stage, data flows forward only):
    tinyexit.models           train the early-exit classifier and the binary denoiser
    tinyexit.export           int8 quantization, ONNX / TFLite per exit, C sources
    tinyexit.firmware_bridge  protocol, host harness, device agent, firmware
    tinyexit.eval             MACs, accuracy, latency, energy reports and checks
`tinyexit.pipeline.run_demo` composes them; `tinyexit.cli` is the command line.
"""
__version__ = "0.1.0"
