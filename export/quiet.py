"""Third-party banners off: TensorFlow's C++ logs (oneDNN notice, converter chatter), absl and Python warnings.

Called at the start of export and verify, before TensorFlow's first import (its C++ logging
reads the environment once).  Variables a user set are kept, so `TF_CPP_MIN_LOG_LEVEL=0
tinyexit export RUN` still shows everything.  Numerics are untouched (oneDNN stays as it is).
TensorFlow >= 2.20 prints its oneDNN notice through absl before any log level applies, so
`import_tensorflow` imports it with the process's stderr (fd 2) pointed at /dev/null.
"""
from __future__ import annotations

import logging
import os
import sys
import warnings

_ENV = {
    "TF_CPP_MIN_LOG_LEVEL": "2",       # TF C++: errors only (hides the oneDNN and CPU-feature notices)
    "GLOG_minloglevel": "2",           # MLIR / converter glog lines
    "ABSL_MIN_LOG_LEVEL": "2",         # absl C++ logging used by the TFLite converter
    "GRPC_VERBOSITY": "ERROR",
}


def quiet_tensorflow() -> None:
    for key, value in _ENV.items():
        os.environ.setdefault(key, value)
    for name in ("tensorflow", "absl", "h5py", "onnxruntime", "onnxscript"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"tensorflow(\..*)?")
    warnings.filterwarnings("ignore", module=r"onnxscript(\..*)?")
    try:
        from absl import logging as absl_logging  # installed with TensorFlow; absent on a device
    except ImportError:
        return
    absl_logging.set_verbosity(absl_logging.ERROR)


def import_tensorflow():
    """`import tensorflow` without its import-time banner; errors still raise (and print) after stderr is back."""
    if "tensorflow" in sys.modules or os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0":
        import tensorflow as tf
    else:
        quiet_tensorflow()
        sys.stderr.flush()
        saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 2)
            import tensorflow as tf
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(devnull)
    tf.get_logger().setLevel("ERROR")
    return tf
