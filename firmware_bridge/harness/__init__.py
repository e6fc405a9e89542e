"""The host harness: benchmark a bundle on devices over a link.

Entry: `run_benchmark(run_dir, targets, BenchConfig) -> summary` (`tinyexit bench`).
    bench / worker / summary   the run, one worker per target, summary.json
    session / link / targets   requests with retries, pyserial URLs and pty pairs, agent / QEMU / URL targets
    reference                  the host's int8 reference of what the device runs
    power / measured_energy / energy   power monitors and the energy model
    faults / fault_socket      seeded fault-injecting relays (tests and `tinyexit reliability`)
"""


def run_benchmark(run_dir, targets, cfg=None) -> dict:
    """See tinyexit.firmware_bridge.harness.bench.run_benchmark."""
    from tinyexit.firmware_bridge.harness.bench import BenchConfig, run_benchmark as _run

    return _run(run_dir, targets, cfg or BenchConfig())
