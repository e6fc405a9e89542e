"""The C firmware tree (core/, kernels/, ports/, apps/, tools/, fuzz/) and its build.

Entry: `build_firmware(...)` (`tinyexit firmware build`) compiles the generated
sources of an export bundle (RUN/export/<model>/c) with the kernels and a port.
    sources  the bundle and its c/ folder, checked (never regenerated: `tinyexit export --formats c`)
    host     the host-gcc tier (tools/host_runner.c) driven over stdin/stdout
    verify   generated C vs TFLite Micro on the bundle's test inputs (inputs.npz)
    profile  instructions per layer under QEMU (the selftest app; `tinyexit firmware profile`)
Imports only tinyexit core and the protocol.
"""


def build_firmware(*args, **kwargs):
    """See tinyexit.firmware_bridge.firmware.build.build_firmware."""
    from tinyexit.firmware_bridge.firmware.build import build_firmware as _build

    return _build(*args, **kwargs)
