"""Payloads of each message type: pack to bytes, unpack with every field checked.

Layouts (little-endian, sizes in bytes) are those of docs/protocol.md.  Unpack
raises `ProtocolError` with the status code a device answers with, so the agent
and the C firmware refuse the same payloads in the same way.
"""
from __future__ import annotations

import math
import struct
from dataclasses import dataclass

from tinyexit.firmware_bridge.protocol import constants as pc
from tinyexit.firmware_bridge.protocol.framing import ProtocolError

S = pc.Status
_RUN = struct.Struct("<BBBBHH")
_RESULT = struct.Struct("<BBBBHHIIQ")
_INFO = struct.Struct("<BBHHHIIIIB3x32s")
_ERROR = struct.Struct("<HB")


def _need(ok: bool, code: int, detail: str) -> None:
    if not ok:
        raise ProtocolError(code, detail)


@dataclass(frozen=True)
class LoadInput:
    offset: int
    data: bytes

    def pack(self) -> bytes:
        return struct.pack("<I", self.offset) + bytes(self.data)

    @classmethod
    def unpack(cls, payload: bytes) -> "LoadInput":
        _need(len(payload) > pc.LOAD_FIXED_SIZE, S.REQ_PAYLOAD_SIZE, f"LOAD_INPUT needs > 4 bytes, got {len(payload)}")
        (offset,) = struct.unpack_from("<I", payload)
        return cls(offset, bytes(payload[pc.LOAD_FIXED_SIZE:]))


@dataclass(frozen=True)
class Ack:
    valid_bytes: int  # contiguous input bytes loaded from offset 0

    def pack(self) -> bytes:
        return struct.pack("<I", self.valid_bytes)

    @classmethod
    def unpack(cls, payload: bytes) -> "Ack":
        _need(len(payload) == pc.ACK_SIZE, S.REQ_PAYLOAD_SIZE, f"ACK is 4 bytes, got {len(payload)}")
        return cls(struct.unpack("<I", payload)[0])


@dataclass(frozen=True)
class Run:
    mode: int
    segment: int = 0
    policy: int = 0
    params: tuple[float, ...] = ()
    repeat: int = 1
    slot: int = 0

    def pack(self) -> bytes:
        head = _RUN.pack(self.mode, self.segment, self.policy, len(self.params), self.repeat, self.slot)
        return head + struct.pack(f"<{len(self.params)}f", *self.params)

    @classmethod
    def unpack(cls, payload: bytes) -> "Run":
        _need(len(payload) >= pc.RUN_FIXED_SIZE, S.REQ_PAYLOAD_SIZE, f"RUN needs >= 8 bytes, got {len(payload)}")
        mode, segment, policy, n_params, repeat, slot = _RUN.unpack_from(payload)
        _need(n_params <= pc.MAX_POLICY_PARAMS, S.REQ_BAD_PARAMS, f"{n_params} params > {pc.MAX_POLICY_PARAMS}")
        _need(len(payload) == pc.RUN_FIXED_SIZE + 4 * n_params, S.REQ_PAYLOAD_SIZE,
              f"RUN with {n_params} params must be {pc.RUN_FIXED_SIZE + 4 * n_params} bytes, got {len(payload)}")
        _need(mode in pc.MODE_NAMES, S.REQ_BAD_MODE, f"mode {mode}")
        _need(1 <= repeat <= pc.MAX_REPEAT, S.REQ_BAD_REPEAT, f"repeat {repeat}")
        params = struct.unpack_from(f"<{n_params}f", payload, pc.RUN_FIXED_SIZE)
        _need(all(math.isfinite(p) for p in params), S.REQ_BAD_PARAMS, "non-finite policy parameter")
        return cls(mode, segment, policy, tuple(params), repeat, slot)


@dataclass(frozen=True)
class Result:
    mode: int
    exit: int
    ticks: tuple[int, ...]          # per segment executed, summed over `repeat` runs
    logits: tuple[int, ...]         # int8 logits of the exit taken (or of the last segment run)
    tick_hz: int
    repeat: int = 1
    decision_ticks: int = 0         # ticks spent in exit tests, summed over repeats
    window: int = 0                 # energy-window number when flags has RESULT_FLAG_WINDOW
    flags: int = 0

    def pack(self) -> bytes:
        head = _RESULT.pack(self.mode, self.exit, len(self.ticks), self.flags, self.repeat, len(self.logits),
                            self.tick_hz, self.window, self.decision_ticks)
        return head + struct.pack(f"<{len(self.ticks)}Q{len(self.logits)}b", *self.ticks, *self.logits)

    @classmethod
    def unpack(cls, payload: bytes) -> "Result":
        _need(len(payload) >= pc.RESULT_FIXED_SIZE, S.REQ_PAYLOAD_SIZE, f"RESULT needs >= 24 bytes, got {len(payload)}")
        mode, exit_, n_ticks, flags, repeat, n_logits, tick_hz, window, decision = _RESULT.unpack_from(payload)
        _need(n_ticks <= pc.MAX_SEGMENTS and n_logits <= pc.MAX_LOGITS, S.REQ_PAYLOAD_SIZE,
              f"RESULT with {n_ticks} ticks and {n_logits} logits exceeds the limits")
        size = pc.RESULT_FIXED_SIZE + 8 * n_ticks + n_logits
        _need(len(payload) == size, S.REQ_PAYLOAD_SIZE, f"RESULT must be {size} bytes, got {len(payload)}")
        values = struct.unpack_from(f"<{n_ticks}Q{n_logits}b", payload, pc.RESULT_FIXED_SIZE)
        return cls(mode, exit_, tuple(values[:n_ticks]), tuple(values[n_ticks:]), tick_hz, repeat, decision,
                   window, flags)


@dataclass(frozen=True)
class Info:
    runtime: int
    n_segments: int
    capabilities: int
    max_payload: int
    n_logits: int
    tick_hz: int
    input_bytes: int
    input_capacity: int
    session: int
    policies: int                   # bit i set: policy id i supported
    artifact_hash: bytes            # raw sha256, 32 bytes
    device: str = ""
    runtime_name: str = ""
    version: str = ""

    def pack(self) -> bytes:
        head = _INFO.pack(self.runtime, self.n_segments, self.capabilities, self.max_payload, self.n_logits,
                          self.tick_hz, self.input_bytes, self.input_capacity, self.session, self.policies,
                          bytes(self.artifact_hash))
        return head + b"".join(_pack_str(s) for s in (self.device, self.runtime_name, self.version))

    @classmethod
    def unpack(cls, payload: bytes) -> "Info":
        _need(len(payload) >= pc.INFO_FIXED_SIZE + 3, S.REQ_PAYLOAD_SIZE, f"INFO needs >= 63 bytes, got {len(payload)}")
        fields = _INFO.unpack_from(payload)
        strings, pos = [], pc.INFO_FIXED_SIZE
        for _ in range(3):
            text, pos = _unpack_str(payload, pos, pc.MAX_STRING)
            strings.append(text)
        _need(pos == len(payload), S.REQ_PAYLOAD_SIZE, f"INFO has {len(payload) - pos} trailing bytes")
        _need(pc.MIN_DEVICE_PAYLOAD <= fields[3] <= pc.MAX_PAYLOAD, S.REQ_PAYLOAD_SIZE,
              f"device max payload {fields[3]} outside [{pc.MIN_DEVICE_PAYLOAD}, {pc.MAX_PAYLOAD}]")
        return cls(*fields, *strings)

    @property
    def hash_hex(self) -> str:
        return bytes(self.artifact_hash).hex()

    def to_dict(self) -> dict:
        caps = [name for bit, name in pc.CAPABILITY_NAMES.items() if self.capabilities & bit]
        return {"device": self.device, "runtime": pc.RUNTIME_NAMES.get(self.runtime, str(self.runtime)),
                "runtime_name": self.runtime_name, "version": self.version, "artifact_hash": self.hash_hex,
                "tick_hz": self.tick_hz, "capabilities": caps, "max_payload": self.max_payload,
                "n_segments": self.n_segments, "n_logits": self.n_logits, "input_bytes": self.input_bytes,
                "input_capacity": self.input_capacity, "policies": self.policies, "session": self.session}


@dataclass(frozen=True)
class Error:
    code: int
    text: str = ""

    def pack(self) -> bytes:
        text = self.text.encode("ascii", "replace")[:pc.MAX_ERROR_TEXT]
        return _ERROR.pack(self.code, len(text)) + text

    @classmethod
    def unpack(cls, payload: bytes) -> "Error":
        _need(len(payload) >= pc.ERROR_FIXED_SIZE, S.REQ_PAYLOAD_SIZE, f"ERROR needs >= 3 bytes, got {len(payload)}")
        code, n = _ERROR.unpack_from(payload)
        _need(n <= pc.MAX_ERROR_TEXT and len(payload) == pc.ERROR_FIXED_SIZE + n, S.REQ_PAYLOAD_SIZE,
              f"ERROR text length {n} does not match its {len(payload) - 3} bytes")
        return cls(code, payload[pc.ERROR_FIXED_SIZE:].decode("ascii", "replace"))

    def describe(self) -> str:
        name = pc.ERROR_NAMES.get(self.code, f"0x{self.code:04X}")
        return f"{name} (0x{self.code:04X}): {self.text or pc.ERROR_TEXT.get(self.code, '')}"


def _pack_str(text: str) -> bytes:
    raw = text.encode("utf-8")[:pc.MAX_STRING]
    return bytes([len(raw)]) + raw


def _unpack_str(payload: bytes, pos: int, limit: int) -> tuple[str, int]:
    _need(pos < len(payload), S.REQ_PAYLOAD_SIZE, "string length byte missing")
    n = payload[pos]
    _need(n <= limit and pos + 1 + n <= len(payload), S.REQ_PAYLOAD_SIZE, f"string of {n} bytes overruns")
    return payload[pos + 1:pos + 1 + n].decode("utf-8", "replace"), pos + 1 + n
