"""Every constant of the tinyexit serial protocol, in one place.

The C firmware mirrors this module: `c_header()` renders it as a C header
(`python -m tinyexit.firmware_bridge.protocol.constants > tinyexit_protocol.h`),
so the two can be compared byte for byte instead of kept in step by hand.
docs/protocol.md explains the meaning of each value.  Everything is
little-endian; sizes are in bytes.
"""
from __future__ import annotations

from enum import IntEnum

from tinyexit.exit_policy import POLICY_IDS

PROTOCOL_VERSION = 1

# --- framing ---------------------------------------------------------------
DELIMITER = 0x00            # COBS frame delimiter
HEADER_SIZE = 6             # version u8, type u8, seq u16, length u16
CRC_SIZE = 4                # CRC-32/ISO-HDLC (zlib.crc32) over header + payload
MAX_PAYLOAD = 1024          # protocol-wide upper bound; a device may advertise less
MIN_DEVICE_PAYLOAD = 64     # a device must accept at least this much
MAX_RAW_FRAME = HEADER_SIZE + MAX_PAYLOAD + CRC_SIZE
# COBS adds one byte per started 254-byte block; this bounds every receive buffer.
MAX_ENCODED_FRAME = MAX_RAW_FRAME + MAX_RAW_FRAME // 254 + 1
SEQ_UNSOLICITED = 0xFFFF    # device-initiated frames (boot INFO, NACK); never used by the host
SEQ_MODULO = 0xFFFF         # host sequence numbers run 0 .. 0xFFFE and wrap

# --- message types: requests (host -> device) ------------------------------
MSG_HELLO = 0x01
MSG_LOAD_INPUT = 0x02
MSG_RUN = 0x03
MSG_RESET = 0x04
MSG_EXIT = 0x05             # firmware: end the program (QEMU: semihosting exit 0); no reply
MSG_GENERATE = 0x06         # firmware with the denoiser: seed u32 -> a whole on-device generation, RESULT
# --- message types: responses (device -> host) = request | 0x80 -------------
RESPONSE_BIT = 0x80
MSG_INFO = 0x81             # answers HELLO and RESET; also sent unsolicited at boot
MSG_ACK = 0x82              # answers LOAD_INPUT
MSG_RESULT = 0x83           # answers RUN
MSG_ERROR = 0xFF            # answers any request it cannot execute; NACK when seq == SEQ_UNSOLICITED

MESSAGE_NAMES = {MSG_HELLO: "HELLO", MSG_LOAD_INPUT: "LOAD_INPUT", MSG_RUN: "RUN", MSG_RESET: "RESET",
                 MSG_EXIT: "EXIT", MSG_GENERATE: "GENERATE",
                 MSG_INFO: "INFO", MSG_ACK: "ACK", MSG_RESULT: "RESULT", MSG_ERROR: "ERROR"}
EXPECTED_REPLY = {MSG_HELLO: MSG_INFO, MSG_RESET: MSG_INFO, MSG_LOAD_INPUT: MSG_ACK, MSG_RUN: MSG_RESULT,
                  MSG_GENERATE: MSG_RESULT}

# --- RUN modes --------------------------------------------------------------
MODE_FULL = 0               # a monolithic model (one subgraph), no exit test; RUN.segment picks the variant:
FULL_DEPTH = 0              #   the full-depth network with only the last exit head
FULL_ALL_EXITS = 1          #   every exit head computed in one subgraph (baseline for the cost of splitting)
MODE_CHAIN = 1              # segments 0..k chained, no exit test
MODE_EARLY_EXIT = 2         # segments in order; the device applies the exit policy after each
MODE_SEGMENT = 3            # segment k alone, its input (features of k-1) loaded by the host
MODE_NAMES = {MODE_FULL: "full", MODE_CHAIN: "chain", MODE_EARLY_EXIT: "early_exit", MODE_SEGMENT: "segment"}
# RESULT.mode of a GENERATE reply only; never valid in a RUN request, hence not in MODE_NAMES.
MODE_GENERATE = 4

# --- capability bits (INFO.capabilities) -----------------------------------
CAP_FULL = 1 << 0           # MODE_FULL available (a monolithic model is loaded)
CAP_CHAIN = 1 << 1
CAP_EARLY_EXIT = 1 << 2
CAP_SEGMENT = 1 << 3
CAP_ENERGY_GPIO = 1 << 4    # the device raises a GPIO during each RUN; RESULT.window numbers the pulse
CAP_RESET = 1 << 5
CAP_FULL_ALL_EXITS = 1 << 6  # MODE_FULL variant FULL_ALL_EXITS available
CAP_FEC = 1 << 7            # decodes FEC-encoded frames (fec.py) and answers each request in its encoding
CAPABILITY_NAMES = {CAP_FULL: "full", CAP_CHAIN: "chain", CAP_EARLY_EXIT: "early_exit", CAP_SEGMENT: "segment",
                    CAP_ENERGY_GPIO: "energy_gpio", CAP_RESET: "reset", CAP_FULL_ALL_EXITS: "full_all_exits",
                    CAP_FEC: "fec"}
MODE_CAPABILITY = {MODE_FULL: CAP_FULL, MODE_CHAIN: CAP_CHAIN, MODE_EARLY_EXIT: CAP_EARLY_EXIT,
                   MODE_SEGMENT: CAP_SEGMENT}

# --- RESULT flags -------------------------------------------------------------
RESULT_FLAG_WINDOW = 1 << 0           # RESULT.window holds a valid energy-window number
RESULT_FLAG_TICKS_SATURATED = 1 << 1  # a tick counter hit 2**64-1 (never expected; reported, not hidden)

# --- runtimes (INFO.runtime) ----------------------------------------------------
RUNTIME_OTHER = 0
RUNTIME_LITERT = 1
RUNTIME_ONNXRUNTIME = 2
RUNTIME_TFLM = 3
RUNTIME_GENERATED_C = 4
RUNTIME_NAMES = {RUNTIME_OTHER: "other", RUNTIME_LITERT: "litert", RUNTIME_ONNXRUNTIME: "onnxruntime",
                 RUNTIME_TFLM: "tflm", RUNTIME_GENERATED_C: "generated_c"}

# --- exit policies: ids owned by tinyexit.exit_policy ------------------
POLICY_MAX_SOFTMAX = POLICY_IDS["max_softmax"]
POLICY_ENTROPY = POLICY_IDS["entropy"]
POLICY_PATIENCE = POLICY_IDS["patience"]
POLICY_CALIBRATED = POLICY_IDS["calibrated"]

# --- limits -------------------------------------------------------------------
MAX_SEGMENTS = 16
MAX_POLICY_PARAMS = 16
MAX_REPEAT = 65535
MAX_LOGITS = 768             # outputs of one RESULT: 640 for the MLPerf Tiny autoencoder; fixed part + 16 ticks + 768 <= MAX_PAYLOAD
MAX_STRING = 32             # device name, runtime name, version (INFO)
MAX_ERROR_TEXT = 64
ARTIFACT_HASH_SIZE = 32     # raw sha256
RUN_FIXED_SIZE = 8          # RUN payload before its float32 params
RESULT_FIXED_SIZE = 24      # RESULT payload before ticks and logits
INFO_FIXED_SIZE = 60        # INFO payload before its three strings
LOAD_FIXED_SIZE = 4         # LOAD_INPUT offset before the data
ACK_SIZE = 4
ERROR_FIXED_SIZE = 3        # code u16, text length u8

# --- host timing defaults (seconds) -----------------------------------------------
REPLY_TIMEOUT_S = 2.0       # per try, for every request (RUN adds its expected run time)
MAX_RETRIES = 5             # retransmissions per request before the link is declared dead
BOOT_TIMEOUT_S = 60.0       # waiting for a device to say hello after it was started
DEFAULT_BAUD = 115200

# --- status / error codes: one table, grouped by range (high byte) ---------------------
# 0x00xx ok; 0x01xx framing (a receiver's decoder; a device NACKs with SEQ_UNSOLICITED);
# 0x02xx a well-framed request the device refuses; 0x03xx the device failed.
ERRORS = (
    ("OK", 0x0000, "ok"),
    ("FRAME_COBS", 0x0101, "invalid COBS encoding"),
    ("FRAME_SHORT", 0x0102, "frame shorter than header + CRC"),
    ("FRAME_CRC", 0x0103, "CRC mismatch"),
    ("FRAME_VERSION", 0x0104, "unsupported protocol version"),
    ("FRAME_LENGTH", 0x0105, "length field does not match the payload received"),
    ("FRAME_TOO_LONG", 0x0106, "frame longer than the receive buffer or length above max payload"),
    ("REQ_UNKNOWN_TYPE", 0x0201, "unknown message type"),
    ("REQ_PAYLOAD_SIZE", 0x0202, "payload size wrong for this message type"),
    ("REQ_BAD_SEQ", 0x0203, "sequence number reserved for the device"),
    ("REQ_BAD_MODE", 0x0204, "unknown RUN mode"),
    ("REQ_BAD_SEGMENT", 0x0205, "segment index out of range"),
    ("REQ_BAD_POLICY", 0x0206, "unknown or unsupported exit policy"),
    ("REQ_BAD_PARAMS", 0x0207, "policy parameter count or value out of range"),
    ("REQ_BAD_REPEAT", 0x0208, "repeat count out of range"),
    ("REQ_BAD_SLOT", 0x0209, "input slot beyond the input buffer"),
    ("REQ_INPUT_RANGE", 0x020A, "LOAD_INPUT beyond the input buffer or leaves a gap"),
    ("REQ_INPUT_MISSING", 0x020B, "input slot not loaded"),
    ("REQ_UNSUPPORTED", 0x020C, "mode not supported by this device"),
    ("DEV_NO_MODEL", 0x0301, "no model loaded"),
    ("DEV_RUNTIME", 0x0302, "inference runtime failed"),
    ("DEV_OUT_OF_MEMORY", 0x0303, "out of memory"),
    ("DEV_INTERNAL", 0x0304, "internal error"),
)
ERROR_CODES = {name: code for name, code, _ in ERRORS}
ERROR_NAMES = {code: name for name, code, _ in ERRORS}
ERROR_TEXT = {code: text for _, code, text in ERRORS}
# The Python twin of the C status enum: Status.FRAME_CRC == 0x0103.
Status = IntEnum("Status", [(name, code) for name, code, _ in ERRORS])


def error_range(code: int) -> str:
    return {0x00: "ok", 0x01: "frame", 0x02: "request", 0x03: "device"}.get(code >> 8, "unknown")


def c_header() -> str:
    """The constants as a C header; the firmware's copy must equal this text."""
    lines = ["/* Generated by tinyexit.firmware_bridge.protocol.constants -- do not edit. */",
             "#ifndef TINYEXIT_PROTOCOL_H", "#define TINYEXIT_PROTOCOL_H", ""]
    scalars = [(k, v) for k, v in globals().items()
               if k.isupper() and isinstance(v, (int, float)) and not isinstance(v, bool)
               and not k.endswith("_S")]
    for name, value in scalars:
        lines.append(f"#define TX_{name} {_c_literal(name, value)}")
    lines += ["", "/* X-macro: X(name, code, text); the string table is generated from this list. */",
              "#define TX_ERROR_LIST(X) \\"]
    lines += [f"    X({name}, 0x{code:04X}, \"{text}\") \\" for name, code, text in ERRORS]
    lines += ["", "#endif /* TINYEXIT_PROTOCOL_H */", ""]
    return "\n".join(lines)


_HEX_PREFIXES = ("MSG_", "CAP_", "RESULT_FLAG_", "SEQ_", "RESPONSE_BIT", "DELIMITER")


def _c_literal(name: str, value) -> str:
    if isinstance(value, float):
        return repr(value)
    return f"0x{value:02X}u" if name.startswith(_HEX_PREFIXES) else f"{value}u"


if __name__ == "__main__":
    print(c_header(), end="")
