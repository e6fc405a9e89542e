"""firmware_bridge: run exported exits on a device over a serial link and measure them there.

Five rooms, each with its entry named in its own __init__ (imports are lazy, and
nothing here imports torch or TensorFlow: a Raspberry Pi installs only numpy,
pyserial and one interpreter runtime):
    protocol/     frames, messages, constants (Python + the generated C header), exit-policy wire rules
    agent/        what runs on a Raspberry Pi: `tinyexit agent`        -> agent.run_agent(AgentConfig)
    harness/      bench over a link, targets, power monitors            -> harness.run_benchmark(run, targets, cfg)
    firmware/     the C tree (core, kernels, ports, apps) and its build -> firmware.build_firmware(bundle, cfg)
    reliability/  fuzzers and long fault runs                           -> reliability.run_fault_benchmark(...)
The arrows between them are in docs/packages.md; tests/core/test_architecture.py enforces them.
"""
