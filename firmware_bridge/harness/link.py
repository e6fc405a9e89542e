"""Byte links (moved to tinyexit.firmware_bridge.protocol.link, which the agent may import too).

Re-exported here for the harness modules and tests that name harness.link.
"""
from tinyexit.firmware_bridge.protocol.link import (  # noqa: F401
    LinkClosed, PortLock, PtyMasterLink, PtyPair, SerialLink, lock_path,
)
