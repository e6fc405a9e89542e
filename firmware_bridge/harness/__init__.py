"""The host harness: benchmark a bundle on devices over a link.

Entry: `run_benchmark(path, targets, BenchConfig) -> summary` (`tinyexit bench`); path: a run or a bundle dir.
    bench / worker / summary   the run, one worker per target, summary.json
    session / targets          requests with retries, agent / QEMU / URL targets (links: protocol.link)
    reference                  the host's int8 reference of what the device runs
    power / measured_energy / energy   power monitors and the energy model
    faults / fault_socket      seeded fault-injecting relays (tests and `tinyexit reliability`)
"""


def run_benchmark(run_dir, targets, cfg=None, log=print, monitor=None) -> dict:
    """See tinyexit.firmware_bridge.harness.bench.run_benchmark."""
    from tinyexit.firmware_bridge.harness.bench import BenchConfig, run_benchmark as _run

    return _run(run_dir, targets, cfg or BenchConfig(), log=log, monitor=monitor)
