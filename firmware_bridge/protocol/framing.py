"""Frames on the wire: COBS byte stuffing, a 0x00 delimiter and a CRC-32.

    wire  = [0x00]? COBS(header || payload || crc32_le(header || payload)) 0x00
    header = version u8 | type u8 | seq u16 | length u16          (little-endian)

COBS guarantees no 0x00 inside a frame, so a reader that lost its place (line
noise, a reset mid-frame) resynchronizes at the next 0x00 and loses at most
the frame it was in.  `FrameDecoder` is a byte-at-a-time state machine whose
buffer never grows past the longest legal frame; nothing is allocated from a
length field.

Forward error correction (fec.py, docs/protocol.md "FEC encoding") is the second
encoding of the same raw frame: `encode_frame(frame, fec=True)`.  The decoder
tries COBS first, then FEC, on every frame; `Frame.fec` says which one arrived,
so a device can answer in kind.
"""
from __future__ import annotations

import struct
import zlib
from collections import Counter
from dataclasses import dataclass, field

from tinyexit.firmware_bridge.protocol import constants as pc
from tinyexit.firmware_bridge.protocol import fec as _fec

_HEADER = struct.Struct("<BBHH")


class ProtocolError(Exception):
    """A frame or message that breaks the protocol; `code` is its status code."""

    def __init__(self, code: int, detail: str = ""):
        self.code = int(code)
        name = pc.ERROR_NAMES.get(self.code, f"0x{self.code:04X}")
        super().__init__(f"{name}: {detail or pc.ERROR_TEXT.get(self.code, 'protocol error')}")

    @property
    def name(self) -> str:
        return pc.ERROR_NAMES.get(self.code, f"0x{self.code:04X}")


@dataclass(frozen=True)
class Frame:
    type: int
    seq: int
    payload: bytes = b""
    version: int = pc.PROTOCOL_VERSION
    fec: bool = field(default=False, compare=False, repr=False)  # arrived FEC-encoded (not part of its identity)

    @property
    def type_name(self) -> str:
        return pc.MESSAGE_NAMES.get(self.type, f"0x{self.type:02X}")


def crc32(data: bytes) -> int:
    """CRC-32/ISO-HDLC (the zlib/Ethernet CRC): check value 0xCBF43926 for b'123456789'."""
    return zlib.crc32(data) & 0xFFFFFFFF


def cobs_encode(data: bytes) -> bytes:
    """Consistent Overhead Byte Stuffing (Cheshire & Baker), canonical form.

    Each block is a code byte n followed by n-1 non-zero bytes; n < 255 means a
    zero followed (except at the very end), n == 255 means 254 bytes and no zero.
    Data ending exactly on a full 254-byte block gets no trailing 0x01 block.
    """
    out = bytearray()
    block = bytearray()
    full_block_last = False
    for byte in data:
        if byte == 0:
            out.append(len(block) + 1)
            out += block
            block.clear()
            full_block_last = False
            continue
        block.append(byte)
        full_block_last = False
        if len(block) == 254:
            out.append(255)
            out += block
            block.clear()
            full_block_last = True
    if block or not full_block_last:
        out.append(len(block) + 1)
        out += block
    return bytes(out)


def cobs_decode(data: bytes) -> bytes:
    """Inverse of cobs_encode for one frame without its delimiter; ProtocolError on bad stuffing."""
    out = bytearray()
    i, n = 0, len(data)
    while i < n:
        code = data[i]
        if code == 0 or i + code > n:
            raise ProtocolError(pc.Status.FRAME_COBS, f"code byte {code} at {i} runs past the frame end")
        block = data[i + 1:i + code]
        if 0 in block:
            raise ProtocolError(pc.Status.FRAME_COBS, f"zero byte inside the frame near {i}")
        out += block
        i += code
        if code != 255 and i < n:
            out.append(0)
    return bytes(out)


def encode_frame(frame: Frame, lead: bool = False, fec: bool = False) -> bytes:
    """The bytes of one frame on the wire; `lead` prepends a 0x00 that flushes a receiver's partial frame.

    `fec`: Reed-Solomon coded (fec.py) when the frame fits (raw <= 214 bytes), else plain COBS as always."""
    if len(frame.payload) > pc.MAX_PAYLOAD:
        raise ProtocolError(pc.Status.FRAME_TOO_LONG, f"payload of {len(frame.payload)} bytes")
    raw = raw_frame(frame)
    body = _fec.fec_encode(raw) if fec else None
    return (b"\x00" if lead else b"") + (body if body is not None else cobs_encode(raw)) + b"\x00"


def raw_frame(frame: Frame) -> bytes:
    """header || payload || crc32: what either encoding carries."""
    raw = _HEADER.pack(frame.version, frame.type, frame.seq, len(frame.payload)) + bytes(frame.payload)
    return raw + struct.pack("<I", crc32(raw))


def parse_raw_frame(raw: bytes, max_payload: int = pc.MAX_PAYLOAD) -> Frame:
    """Check and split a COBS-decoded frame.  The order of checks is the spec's (docs/protocol.md)."""
    if len(raw) < pc.HEADER_SIZE + pc.CRC_SIZE:
        raise ProtocolError(pc.Status.FRAME_SHORT, f"{len(raw)} bytes")
    version, msg_type, seq, length = _HEADER.unpack_from(raw)
    if length > max_payload:
        raise ProtocolError(pc.Status.FRAME_TOO_LONG, f"length field {length} > max payload {max_payload}")
    if length != len(raw) - pc.HEADER_SIZE - pc.CRC_SIZE:
        raise ProtocolError(pc.Status.FRAME_LENGTH,
                            f"length field {length}, {len(raw) - pc.HEADER_SIZE - pc.CRC_SIZE} bytes received")
    (crc,) = struct.unpack_from("<I", raw, len(raw) - pc.CRC_SIZE)
    if crc != crc32(raw[:-pc.CRC_SIZE]):
        raise ProtocolError(pc.Status.FRAME_CRC)
    if version != pc.PROTOCOL_VERSION:
        raise ProtocolError(pc.Status.FRAME_VERSION, f"version {version}, this end speaks {pc.PROTOCOL_VERSION}")
    return Frame(msg_type, seq, bytes(raw[pc.HEADER_SIZE:pc.HEADER_SIZE + length]), version)


def max_encoded_size(max_payload: int) -> int:
    raw = pc.HEADER_SIZE + max_payload + pc.CRC_SIZE
    return raw + raw // 254 + 1


class FrameDecoder:
    """Streaming decoder: feed bytes, get back Frames and ProtocolErrors in arrival order.

    Counters: frames, empty (lone delimiters), errors by status name, resyncs (times
    the decoder dropped bytes and restarted at the next delimiter), bytes fed; of the frames,
    fec_frames arrived FEC-encoded (fec_repaired_frames needed repair: fec_corrected_bytes,
    fec_recovered_drops, fec_removed_inserts).
    """

    def __init__(self, max_payload: int = pc.MAX_PAYLOAD):
        if not pc.MIN_DEVICE_PAYLOAD <= max_payload <= pc.MAX_PAYLOAD:
            raise ValueError(f"max_payload {max_payload} outside [{pc.MIN_DEVICE_PAYLOAD}, {pc.MAX_PAYLOAD}]")
        self.max_payload = max_payload
        self._limit = max_encoded_size(max_payload)
        self._buf = bytearray()
        self._overflow = False
        self.counts: Counter = Counter()

    def feed(self, data: bytes) -> list:
        events: list = []
        self.counts["bytes"] += len(data)
        start = 0
        while start < len(data):
            end = data.find(b"\x00", start)
            chunk = data[start:] if end < 0 else data[start:end]
            self._append(chunk, events)
            if end < 0:
                break
            self._close_frame(events)
            start = end + 1
        return events

    def _append(self, chunk: bytes, events: list) -> None:
        if self._overflow:
            self.counts["discarded_bytes"] += len(chunk)
            return
        if len(self._buf) + len(chunk) > self._limit:
            # Stop buffering at once: a stream without delimiters must not grow memory.
            self.counts["discarded_bytes"] += len(self._buf) + len(chunk)
            self._buf.clear()
            self._overflow = True
            self._error(ProtocolError(pc.Status.FRAME_TOO_LONG, f"more than {self._limit} bytes without a delimiter"),
                        events)
            return
        self._buf += chunk

    def _close_frame(self, events: list) -> None:
        if self._overflow:
            self._overflow = False
            return
        if not self._buf:
            self.counts["empty"] += 1
            return
        encoded = bytes(self._buf)
        self._buf.clear()
        try:
            frame = parse_raw_frame(cobs_decode(encoded), self.max_payload)
        except ProtocolError as exc:
            frame = self._fec_frame(encoded)
            if frame is None:  # counted as the COBS path's error: FEC found nothing either
                self.counts["discarded_bytes"] += len(encoded) + 1
                self._error(exc, events)
                return
        self.counts["frames"] += 1
        events.append(frame)

    def _fec_frame(self, body: bytes) -> Frame | None:
        """The first FEC decoding of `body` whose frame checks (CRC, length), in the spec's search order."""
        for found in _fec.fec_candidates(body):
            try:
                frame = parse_raw_frame(found.raw, self.max_payload)
            except ProtocolError:
                continue
            c = self.counts
            c["fec_frames"] += 1
            c["fec_corrected_bytes"] += found.corrected
            c["fec_recovered_drops"] += found.drops
            c["fec_removed_inserts"] += found.inserts
            c["fec_repaired_frames"] += bool(found.corrected or found.drops or found.inserts)
            return Frame(frame.type, frame.seq, frame.payload, frame.version, fec=True)
        return None

    def _error(self, exc: ProtocolError, events: list) -> None:
        self.counts["resyncs"] += 1
        self.counts[exc.name] += 1
        # Without its traceback: exc -> traceback -> this frame -> events -> exc is a cycle that only the
        # garbage collector frees, so a stream of noise would pile up errors faster than they are released.
        events.append(exc.with_traceback(None))

    @property
    def pending(self) -> int:
        """Bytes of an unfinished frame held in the buffer."""
        return len(self._buf)
