"""A device-agent install needs none of the training or export stack.

`tinyexit agent` and `tinyexit bench BUNDLE` run as subprocesses whose import
system refuses torch, tensorflow, scikit-learn, ONNX, SciPy, matplotlib and
tflite_micro (a meta-path finder installed before tinyexit is imported), against
a bundle directory copied away from its run (no config.json, no checkpoints, no
data set beside it).  The agent's runtime, ai-edge-litert, is allowed.  The
bench's results land in BUNDLE/bench/<name>/ and must agree with the host's
int8 reference on every sample and mode.

The same check on a real `pip install '.[agent]'` venv: `make agent-venv-check`
(tests/core/agent_venv_check.sh), not part of the suite.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tinyexit.firmware_bridge.harness.faults import PtyBridge
from tinyexit.firmware_bridge.harness.link import SerialLink
from tinyexit.firmware_bridge.harness.results import read_results, record_key
from tinyexit.firmware_bridge.harness.session import DeviceSession

BLOCKED = ("torch", "tensorflow", "sklearn", "onnx", "onnxruntime", "onnxscript", "scipy", "matplotlib",
           "tflite_micro", "keras")
# Runs `python -m tinyexit ARGS` with the blocked packages made unimportable (as if not installed).
BOOTSTRAP = f"""
import runpy, sys
from importlib.abc import MetaPathFinder
BLOCKED = {BLOCKED!r}
class Absent(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked: an agent install lacks it)", name=name)
        return None
sys.meta_path.insert(0, Absent())
sys.argv = ["tinyexit", *sys.argv[1:]]
runpy.run_module("tinyexit", run_name="__main__", alter_sys=True)
"""
N = 24
MODES = ("early_exit", "full")
# "full" runs both full-depth models of the bundle: the chained one and the all-exits monolith
RECORDED = ("early_exit", "full", "full:all_exits")


def _tinyexit(*args: str) -> list[str]:
    return [sys.executable, "-c", BOOTSTRAP, *args]


def test_the_bootstrap_blocks_the_heavy_stacks():
    code = ("import sys\nfor m in %r:\n    try:\n        __import__(m)\n    except ModuleNotFoundError:\n"
            "        continue\n    sys.exit('imported ' + m)\n" % (BLOCKED,))
    boot = BOOTSTRAP.replace('runpy.run_module("tinyexit", run_name="__main__", alter_sys=True)', code)
    done = subprocess.run([sys.executable, "-c", boot], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_agent_and_bench_run_a_copied_bundle_without_the_training_stack(bundle_template, tmp_path):
    bundle = tmp_path / "elsewhere" / "classifier"
    shutil.copytree(bundle_template, bundle)  # the bundle alone, away from its run directory
    bridge = PtyBridge()
    log = open(tmp_path / "agent.log", "wb")
    agent = subprocess.Popen(_tinyexit("agent", "--port", bridge.device_path, "--artifact", str(bundle)),
                             stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        host = SerialLink(bridge.host_path)
        try:
            DeviceSession(host).handshake(120)  # the agent is up: it imported what it needs
        finally:
            host.close()
        bench = subprocess.run(_tinyexit("bench", str(bundle), "--target", bridge.host_path, "--modes",
                                         ",".join(MODES), "--limit", str(N), "--warmup", "0", "--name", "pi"),
                               capture_output=True, text=True, timeout=300)
        assert bench.returncode == 0, bench.stderr[-3000:]
        assert agent.poll() is None, (tmp_path / "agent.log").read_text()[-3000:]
    finally:
        agent.kill()
        agent.wait()
        log.close()
        bridge.close()
    assert "Traceback" not in (tmp_path / "agent.log").read_text()
    records, torn = read_results(bundle / "bench" / "pi" / "results.jsonl")
    assert torn is None and len(records) == N * len(RECORDED) == len({record_key(r) for r in records})
    assert sorted((r["sample"], r["mode"]) for r in records) == sorted((s, m) for s in range(N) for m in RECORDED)
    assert all(r["host_logits_equal"] and r["exit"] == r["host_exit"] for r in records)
    early = [r for r in records if r["mode"] == "early_exit"]
    assert len({r["exit"] for r in early}) > 1  # the device decided: not every sample ran to the end
    assert (bundle / "bench" / "pi" / "summary.json").is_file()
