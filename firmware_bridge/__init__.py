"""firmware_bridge: run exported exits on a device over a serial link and measure them there.

Entry points (import lazily; nothing here imports torch or TensorFlow, so a
Raspberry Pi installs only numpy, pyserial and ai-edge-litert):
    tinyexit.firmware_bridge.agent.run_agent(AgentConfig)          device side: `tinyexit agent`
    tinyexit.firmware_bridge.bench.run_benchmark(run_dir, targets, BenchConfig) -> summary
                                                                  host side: `tinyexit bench`
The protocol: protocol_constants (every constant, rendered as the C header),
framing (COBS + CRC-32 frames, streaming decoder), messages (payload layouts),
session (host requests, retries, link statistics), link (pyserial URLs, pty
pairs, port locks), faults (a fault-injecting pty bridge for tests).
Spec: docs/protocol.md; results format: docs/artifacts.md; Pi setup: docs/raspberry-pi.md.
"""
