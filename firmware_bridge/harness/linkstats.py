"""Counters of one link, recorded in summary.json under "link" (and in a failed run's summary too)."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from tinyexit.firmware_bridge.protocol import constants as pc


@dataclass
class LinkStats:
    """Counters of one link; `to_dict` is what summary.json records under "link"."""

    frames_sent: int = 0
    bytes_sent: int = 0
    payload_bytes_sent: int = 0
    input_bytes: int = 0             # tensor bytes carried by LOAD_INPUT (first transmissions)
    input_wire_bytes: int = 0        # wire bytes of LOAD_INPUT frames, retransmissions included
    retries: int = 0
    timeouts: int = 0
    nacks: int = 0
    stale_replies: int = 0
    resets: int = 0                  # device restarts noticed (boot INFO, lost session state, device gone)
    restarts: int = 0                # of those, devices the harness restarted itself (agent, QEMU)
    load_shrinks: int = 0            # LOAD_INPUT chunk size cut after a failed try on a noisy line
    load_chunk_min: int = 0          # smallest and last LOAD_INPUT chunk the adaptive sizing chose (bytes)
    load_chunk_last: int = 0
    request_tries: int = 0           # tries of requests (first transmissions + retries)
    failed_tries: int = 0            # tries whose reply did not come back whole: frame error rate = failed/tries
    srtt_s: float | None = None      # smoothed round trip of the last request type measured (LOAD_INPUT first)
    rto_s: float | None = None
    payload_bytes_received: int = 0
    fec_mode: str = "off"            # asked for: auto, on, off
    fec_supported: bool | None = None  # the device advertised CAP_FEC (None: never heard its INFO)
    fec_frames_sent: int = 0         # requests sent FEC-encoded
    fec_switched_s: float | None = None  # seconds into the session when requests went FEC (auto or on)
    fec_switched_after_tries: int | None = None
    fec_reason: str = ""
    fec_probe_bytes: int | None = None    # auto: reply bytes the probe measured, and the damaged bytes among them
    fec_probe_damaged: int | None = None
    fec_plain_after_tries: int | None = None  # auto: the probe went plain after this many tries
    decoder: Counter = field(default_factory=Counter)

    def to_dict(self) -> dict:
        d = self.decoder
        frame_errors = {name: d[name] for name in pc.ERROR_NAMES.values() if name.startswith("FRAME_") and d[name]}
        received = d["bytes"]
        wire = self.bytes_sent + received
        payload = self.payload_bytes_sent + self.payload_bytes_received
        return {"frames": self.frames_sent + d["frames"], "frames_sent": self.frames_sent,
                "frames_received": d["frames"], "bytes_sent": self.bytes_sent, "bytes_received": received,
                "bytes_on_wire": wire, "payload_bytes": payload,
                "payload_efficiency": _ratio(self.input_bytes, self.input_wire_bytes),
                "payload_efficiency_all_frames": _ratio(payload, wire),
                "input_bytes": self.input_bytes, "input_wire_bytes": self.input_wire_bytes,
                "retries": self.retries, "crc_errors": d["FRAME_CRC"], "corrupt_frames": sum(frame_errors.values()),
                "frame_errors": frame_errors, "resyncs": d["resyncs"], "discarded_bytes": d["discarded_bytes"],
                "timeouts": self.timeouts, "nacks": self.nacks, "stale_replies": self.stale_replies,
                "resets": self.resets, "restarts": self.restarts, "load_shrinks": self.load_shrinks,
                "load_chunk_min": self.load_chunk_min, "load_chunk_last": self.load_chunk_last,
                "request_tries": self.request_tries, "failed_tries": self.failed_tries,
                "frame_error_rate": _ratio(self.failed_tries, self.request_tries),
                "srtt_ms": None if self.srtt_s is None else round(self.srtt_s * 1e3, 3),
                "rto_ms": None if self.rto_s is None else round(self.rto_s * 1e3, 3),
                "fec": self.fec_dict()}

    def fec_dict(self) -> dict:
        d = self.decoder
        return {"mode": self.fec_mode, "device_supports": self.fec_supported, "active": self.fec_switched_s is not None,
                "frames_sent": self.fec_frames_sent, "frames_received": d["fec_frames"],
                "repaired_frames": d["fec_repaired_frames"], "corrected_bytes": d["fec_corrected_bytes"],
                "recovered_drops": d["fec_recovered_drops"], "removed_inserts": d["fec_removed_inserts"],
                "switched_at_s": self.fec_switched_s, "switched_after_tries": self.fec_switched_after_tries,
                "reason": self.fec_reason, "probe_bytes": self.fec_probe_bytes,
                "probe_damaged_bytes": self.fec_probe_damaged, "plain_after_tries": self.fec_plain_after_tries}

    def merge(self, other: "LinkStats") -> None:
        for name in ("frames_sent", "bytes_sent", "payload_bytes_sent", "input_bytes", "input_wire_bytes", "retries",
                     "timeouts", "nacks", "stale_replies", "resets", "restarts", "load_shrinks",
                     "payload_bytes_received", "request_tries", "failed_tries", "fec_frames_sent"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.decoder.update(other.decoder)
        mins = [v for v in (self.load_chunk_min, other.load_chunk_min) if v]
        self.load_chunk_min = min(mins) if mins else 0
        self.load_chunk_last = other.load_chunk_last or self.load_chunk_last
        self.srtt_s = other.srtt_s if other.srtt_s is not None else self.srtt_s
        self.rto_s = other.rto_s if other.rto_s is not None else self.rto_s
        self.fec_mode = other.fec_mode
        if other.fec_supported is not None:
            self.fec_supported = bool(self.fec_supported) or other.fec_supported
        self.fec_reason = other.fec_reason or self.fec_reason
        for name in ("fec_probe_bytes", "fec_probe_damaged", "fec_plain_after_tries"):
            if getattr(other, name) is not None:
                setattr(self, name, getattr(other, name))
        if other.fec_switched_s is not None and (self.fec_switched_s is None or
                                                 other.fec_switched_s < self.fec_switched_s):
            self.fec_switched_s, self.fec_reason = other.fec_switched_s, other.fec_reason
            self.fec_switched_after_tries = other.fec_switched_after_tries


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 6) if b else None
