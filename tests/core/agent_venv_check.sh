#!/usr/bin/env bash
# `make agent-venv-check`: what a Raspberry Pi install can do, checked for real (not part of the test suite).
#
# Two fresh venvs, each with `pip install '.[agent]'` and nothing else (numpy, pyserial, tqdm,
# ai-edge-litert): one runs `tinyexit agent` on the device end of a pty pair, the other runs
# `tinyexit bench BUNDLE --target <host end>` on a bundle copied away from its run directory.
# Fails if torch, tensorflow, scikit-learn, onnx or scipy is importable in either venv, or if any
# result disagrees with the host's int8 reference.
#
# usage: tests/core/agent_venv_check.sh [BUNDLE_DIR]   (default: build the test fixture bundle with .venv)
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
PYTHON=${PYTHON:-python3}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/tinyexit-agent-check.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
export PYTHONNOUSERSITE=1
unset PYTHONPATH

if [ $# -ge 1 ]; then
  cp -r "$1" "$WORK/bundle"
else
  echo "agent-venv-check: building the fixture bundle with $REPO/.venv (TensorFlow lives there only)"
  (cd "$REPO" && .venv/bin/python - "$WORK/run" <<'PY'
import importlib.util, sys
spec = importlib.util.spec_from_file_location("fb_conftest", "tests/firmware_bridge/conftest.py")
mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
from pathlib import Path
mod.build_artifact(Path(sys.argv[1]))
PY
  ) >"$WORK/build.log" 2>&1 || { tail -20 "$WORK/build.log"; exit 1; }
  cp -r "$WORK/run/export/classifier" "$WORK/bundle"
  rm -rf "$WORK/run"  # the bundle alone: no config.json, checkpoints or data set beside it
fi

cd "$WORK"  # not the repository: nothing of the source tree is importable
for v in agent bench; do
  echo "agent-venv-check: venv '$v': pip install '.[agent]'"
  "$PYTHON" -m venv "$WORK/$v"
  { "$WORK/$v/bin/python" -m pip install -q --upgrade pip &&
    "$WORK/$v/bin/python" -m pip install -q "$REPO[agent]"; } >"$WORK/pip-$v.log" 2>&1 ||
    { tail -30 "$WORK/pip-$v.log"; exit 1; }
  "$WORK/$v/bin/python" - <<'PY'
import importlib.util, sys
present = [m for m in ("torch", "tensorflow", "sklearn", "onnx", "onnxruntime", "scipy", "matplotlib", "tflite_micro")
           if importlib.util.find_spec(m) is not None]
assert not present, f"the agent install pulled in {present}"
print("  installed:", ", ".join(sorted(d.metadata["Name"] for d in __import__("importlib.metadata").metadata.distributions())))
PY
done

"$WORK/bench/bin/python" - "$WORK" <<'PY'
import json, subprocess, sys
from pathlib import Path
from tinyexit.firmware_bridge.harness.faults import PtyBridge
from tinyexit.firmware_bridge.harness.link import SerialLink
from tinyexit.firmware_bridge.harness.session import DeviceSession

work = Path(sys.argv[1]); bundle = work / "bundle"
bridge = PtyBridge()
log = open(work / "agent.log", "wb")
agent = subprocess.Popen([str(work / "agent/bin/tinyexit"), "agent", "--port", bridge.device_path,
                          "--artifact", str(bundle)], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
try:
    link = SerialLink(bridge.host_path)
    try:
        info = DeviceSession(link).handshake(120)
    finally:
        link.close()
    print(f"agent-venv-check: agent up (pid {agent.pid})")
    bench = subprocess.run([str(work / "bench/bin/tinyexit"), "bench", str(bundle), "--target", bridge.host_path,
                            "--limit", "50", "--name", "pi"], capture_output=True, text=True, timeout=900)
    print(bench.stdout.strip())
    if bench.returncode:
        sys.exit(f"agent-venv-check: bench failed ({bench.returncode}):\n{bench.stderr[-3000:]}")
finally:
    agent.kill(); agent.wait(); log.close(); bridge.close()
lines = [json.loads(l) for l in (bundle / "bench/pi/results.jsonl").read_text().splitlines()]
bad = [r for r in lines if not (r["host_logits_equal"] and r["exit"] == r["host_exit"])]
modes = sorted({r["mode"] for r in lines})
print(f"agent-venv-check: {len(lines)} results ({len({r['sample'] for r in lines})} samples x {modes}), "
      f"{len(bad)} disagree with the host reference")
sys.exit(1 if bad or not lines else 0)
PY
echo "agent-venv-check: OK"
