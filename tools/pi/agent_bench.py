"""Bench an agent started by any command (a venv, a chroot under qemu-user, ssh to a Pi) from this host.

For each kernel set: a pty pair is bridged (PtyBridge), the agent command is started with the device
end as its port, the host waits for its INFO, then `tinyexit bench BUNDLE --target <host end>` runs
every sample of the bundle.  The agreement figures of each summary.json (LSB histogram, exit and
top-1 disagreements, the device runtime and the host reference's kernels) are collected into
OUT/agreement.json and printed.  Not a test: it measures what a platform does.

usage: .venv/bin/python tools/pi/agent_bench.py --bundle BUNDLE_COPY --name x86-tflite \
          --agent "/tmp/v/bin/tinyexit agent --port {port} --artifact /path/to/bundle --kernels {kernels}"
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

from tinyexit.firmware_bridge.harness.faults import PtyBridge
from tinyexit.firmware_bridge.harness.link import SerialLink
from tinyexit.firmware_bridge.harness.session import DeviceSession

KEYS = ("agreement_n", "agreement_device_runtime", "agreement_reference_kernels", "agreement_top1",
        "agreement_exit", "logits_equal", "agreement_logit_lsb_histogram", "agreement_tolerance_lsb",
        "agreement_logits_beyond_tolerance", "agreement_exit_disagree", "agreement_exit_disagree_borderline",
        "agreement_top1_disagree", "agreement_top1_disagree_borderline", "agreement_within_tolerance")


def bench_one(agent_cmd: str, bundle: Path, name: str, modes: str, boot_s: float, limit: int | None,
              log_dir: Path) -> dict:
    bridge = PtyBridge()
    log_path = log_dir / f"agent-{name}.log"
    log = open(log_path, "wb")
    agent = subprocess.Popen(shlex.split(agent_cmd.format(port=bridge.device_path)), stdout=log,
                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        host = SerialLink(bridge.host_path)
        try:
            info = DeviceSession(host).handshake(boot_s)
        finally:
            host.close()
        print(f"agent_bench: {name}: device '{info.device}', runtime '{info.runtime_name}'", flush=True)
        cmd = [sys.executable, "-m", "tinyexit", "bench", str(bundle), "--target", bridge.host_path,
               "--modes", modes, "--warmup", "0", "--name", name]
        if limit:
            cmd += ["--limit", str(limit)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"agent_bench: bench {name} failed:\n{done.stderr[-3000:]}")
    finally:
        agent.kill()
        agent.wait()
        log.close()
        bridge.close()
    summary = json.loads((bundle / "bench" / name / "summary.json").read_text())
    per_mode = {m: {k: a.get(k) for k in ("n", "logit_lsb_histogram", "tolerance_lsb", "within_tolerance")}
                for m, a in summary["agreement"].items()}
    return {"name": name, "runtime_name": info.runtime_name, **{k: summary.get(k) for k in KEYS},
            "per_mode": per_mode}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--agent", required=True, help="agent command; {port} and {kernels} are filled in")
    p.add_argument("--bundle", required=True, type=Path, help="the host's copy of the bundle the agent serves")
    p.add_argument("--name", required=True, help="bench name prefix (BUNDLE/bench/<name>-<kernels>/)")
    p.add_argument("--kernels", default="optimized,reference")
    p.add_argument("--modes", default="early_exit,segments,full")
    p.add_argument("--boot-s", type=float, default=600.0, help="how long the agent may take to start")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--out", type=Path, default=None, help="agreement.json goes here (default BUNDLE/bench)")
    args = p.parse_args(argv)
    out = args.out or args.bundle / "bench"
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for k in args.kernels.split(","):
        name = f"{args.name}-{k}"
        rows.append(bench_one(args.agent.replace("{kernels}", k), args.bundle, name, args.modes, args.boot_s,
                              args.limit, out))
        r = rows[-1]
        print(f"agent_bench: {name}: {r['agreement_device_runtime']} vs host {r['agreement_reference_kernels']}: "
              f"top-1 {r['agreement_top1']}, exit {r['agreement_exit']}, identical logits {r['logits_equal']}, "
              f"LSB histogram {r['agreement_logit_lsb_histogram']} (tolerance ±{r['agreement_tolerance_lsb']}, "
              f"within: {r['agreement_within_tolerance']}); exit disagreements {r['agreement_exit_disagree']} "
              f"({r['agreement_exit_disagree_borderline']} borderline)", flush=True)
    path = out / f"agreement-{args.name}.json"
    path.write_text(json.dumps(rows, indent=1) + "\n")
    print(f"agent_bench: -> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
