"""The device agent: what runs on a Raspberry Pi (or this machine over a pty pair).

Entry: `run_agent(AgentConfig)` serves one export bundle over the serial protocol
(`tinyexit agent`); `runtime` wraps the interpreter (LiteRT / tflite_runtime / ONNX Runtime,
optimized or reference kernels); `bundle_pack` writes what a Pi installs (`tinyexit agent-bundle`).
Imports only tinyexit core, the bundle loader and the protocol.
"""


def run_agent(cfg) -> int:
    """See tinyexit.firmware_bridge.agent.server.run_agent."""
    from tinyexit.firmware_bridge.agent.server import run_agent as _run

    return _run(cfg)
