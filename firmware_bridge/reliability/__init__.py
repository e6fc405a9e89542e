"""Reliability tooling: long fault runs, the decoder fuzzer, the C protocol fuzzer (`tinyexit reliability`).

Entries: `fault_runs.run_fault_benchmark`, `fuzz_decoder`, `fuzz_c`; see docs/reliability.md.
"""


def run_fault_benchmark(*args, **kwargs):
    """See tinyexit.firmware_bridge.reliability.fault_runs.run_fault_benchmark."""
    from tinyexit.firmware_bridge.reliability.fault_runs import run_fault_benchmark as _run

    return _run(*args, **kwargs)
