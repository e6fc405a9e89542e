"""`tinyexit agent`: the device end of the protocol, for a Raspberry Pi or this machine.

`run_agent(AgentConfig)` opens the port, announces itself with an unsolicited
INFO and serves requests until the link closes.  `DeviceCore` is the protocol
state machine, independent of the link: it answers a frame with reply bytes,
runs segments and applies the exit policy on the device, and answers a
retransmitted request from its cache of the last reply instead of running it
again.  Each request is answered in the encoding it arrived in (COBS or FEC,
CAP_FEC); a reply too long for one frame becomes an ERROR reply.  Timing is
time.perf_counter_ns (tick rate 1e9 Hz).
"""
from __future__ import annotations

import os
import platform
import sys
import time
from dataclasses import dataclass

import numpy as np

from tinyexit import __version__
from tinyexit.errors import UserError
from tinyexit.firmware_bridge.protocol import messages as m
from tinyexit.firmware_bridge.protocol import constants as pc
from tinyexit.firmware_bridge.agent.runtime import KERNELS, RUNTIMES, make_backend
from tinyexit.bundle import Bundle, load_bundle
from tinyexit.firmware_bridge.protocol.decide import ExitDecider
from tinyexit.firmware_bridge.protocol.framing import Frame, FrameDecoder, ProtocolError, encode_frame
from tinyexit.exit_policy import POLICY_IDS, ExitPolicy

S = pc.Status
TICK_HZ = 1_000_000_000
_POLICY_NAMES = {v: k for k, v in POLICY_IDS.items()}


@dataclass(frozen=True)
class AgentConfig:
    port: str
    artifact: str
    runtime: str = "auto"         # auto: ai-edge-litert, else tflite_runtime, else onnxruntime (runtime.py)
    baud: int = pc.DEFAULT_BAUD
    threads: int = 1
    name: str = ""                 # device name reported in INFO; default agent@<hostname>
    input_capacity: int = 16384    # bytes of the input buffer (LOAD_INPUT writes into it)
    max_payload: int = pc.MAX_PAYLOAD
    kernels: str = "optimized"     # optimized (latency) or reference (portable, bit-identical across CPUs)

    def __post_init__(self):
        if self.runtime not in RUNTIMES:
            raise UserError(f"--runtime {self.runtime}: choose one of {', '.join(RUNTIMES)}")
        if self.kernels not in KERNELS:
            raise UserError(f"--kernels {self.kernels}: choose one of {', '.join(KERNELS)}")
        if not pc.MIN_DEVICE_PAYLOAD <= self.max_payload <= pc.MAX_PAYLOAD:
            raise UserError(f"max payload {self.max_payload}: must be in [{pc.MIN_DEVICE_PAYLOAD}, {pc.MAX_PAYLOAD}]")
        if self.baud <= 0 or self.threads < 1 or self.input_capacity < 1:
            raise UserError("--baud, --threads and the input capacity must be positive")

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: dict) -> "AgentConfig":
        return cls(**d)


class DeviceCore:
    """Protocol state of one device: input buffer, session id, the last request and its reply."""

    def __init__(self, art: Bundle, backend, cfg: AgentConfig):
        self.art, self.backend, self.cfg = art, backend, cfg
        self.capacity = max(cfg.input_capacity, max(art.segment_input_bytes(k) for k in range(art.n_segments)))
        self._quant = [(s.outputs["logits"].scale, s.outputs["logits"].zero_point) for s in art.segments]
        self.counts = {"executed": 0, "duplicates": 0, "nacks": 0}
        self._new_session()

    def _new_session(self) -> None:
        self.session = int.from_bytes(os.urandom(4), "little")
        self.buffer = bytearray(self.capacity)
        self.valid = 0
        self._last: tuple | None = None       # (type, seq, payload) of the last executed request
        self._last_reply = b""

    def info(self) -> m.Info:
        caps = pc.CAP_CHAIN | pc.CAP_EARLY_EXIT | pc.CAP_SEGMENT | pc.CAP_RESET | pc.CAP_FEC
        caps |= pc.CAP_FULL if self.backend.has_full else 0
        caps |= pc.CAP_FULL_ALL_EXITS if self.backend.has_all_exits else 0
        name = self.cfg.name or f"agent@{platform.node() or 'host'} {platform.machine()}".strip()
        return m.Info(self.backend.runtime_id, self.art.n_segments, caps, self.cfg.max_payload,
                      self.art.num_classes, TICK_HZ, self.art.input.nbytes, self.capacity, self.session,
                      (1 << len(POLICY_IDS)) - 1, bytes.fromhex(self.art.artifact_hash), name[:pc.MAX_STRING],
                      self.backend.name[:pc.MAX_STRING], f"tinyexit-agent {__version__}")

    def boot_frame(self) -> bytes:
        return encode_frame(Frame(pc.MSG_INFO, pc.SEQ_UNSOLICITED, self.info().pack()), lead=True)

    def handle(self, event) -> bytes:
        """Reply bytes for one decoder event (a Frame, or a ProtocolError to NACK)."""
        if isinstance(event, ProtocolError):
            self.counts["nacks"] += 1
            return encode_frame(Frame(pc.MSG_ERROR, pc.SEQ_UNSOLICITED, m.Error(event.code, str(event)[:64]).pack()))
        key = (event.type, event.seq, event.payload)
        if event.type != pc.MSG_HELLO and key == self._last:
            self.counts["duplicates"] += 1
            return self._last_reply
        reply = self._execute(event)
        self._last, self._last_reply = key, reply
        return reply

    def _execute(self, frame: Frame) -> bytes:
        try:
            if frame.seq == pc.SEQ_UNSOLICITED:
                raise ProtocolError(S.REQ_BAD_SEQ, f"seq 0x{frame.seq:04X} is the device's")
            self.counts["executed"] += 1
            rtype, body = self._dispatch(frame)
        except ProtocolError as exc:
            rtype, body = pc.MSG_ERROR, m.Error(exc.code, _short(exc)).pack()
        except Exception as exc:  # a runtime failure is reported to the host, never kills the device
            rtype, body = pc.MSG_ERROR, m.Error(S.DEV_RUNTIME, f"{type(exc).__name__}: {exc}"[:64]).pack()
        try:
            return encode_frame(Frame(rtype, frame.seq, body), fec=frame.fec)
        except ProtocolError as exc:  # a reply longer than one frame (e.g. too many logits): say so, do not die
            return encode_frame(Frame(pc.MSG_ERROR, frame.seq, m.Error(exc.code, _short(exc)).pack()), fec=frame.fec)

    def _dispatch(self, frame: Frame) -> tuple[int, bytes]:
        if frame.type == pc.MSG_HELLO:
            _expect_empty(frame)
            return pc.MSG_INFO, self.info().pack()
        if frame.type == pc.MSG_RESET:
            _expect_empty(frame)
            self._new_session()
            return pc.MSG_INFO, self.info().pack()
        if frame.type == pc.MSG_LOAD_INPUT:
            return pc.MSG_ACK, self._load(m.LoadInput.unpack(frame.payload)).pack()
        if frame.type == pc.MSG_RUN:
            return pc.MSG_RESULT, self._run(m.Run.unpack(frame.payload)).pack()
        raise ProtocolError(S.REQ_UNKNOWN_TYPE, f"type 0x{frame.type:02X}")

    def _load(self, req: m.LoadInput) -> m.Ack:
        end = req.offset + len(req.data)
        if req.offset > self.valid or end > self.capacity:
            raise ProtocolError(S.REQ_INPUT_RANGE, f"bytes {req.offset}..{end} vs loaded {self.valid}, "
                                                   f"capacity {self.capacity}")
        self.buffer[req.offset:end] = req.data
        self.valid = end if req.offset == 0 else max(self.valid, end)
        return m.Ack(self.valid)

    def _run(self, req: m.Run) -> m.Result:
        n = self.art.n_segments
        if req.mode in (pc.MODE_CHAIN, pc.MODE_SEGMENT) and req.segment >= n:
            raise ProtocolError(S.REQ_BAD_SEGMENT, f"segment {req.segment} of {n}")
        if req.mode == pc.MODE_FULL:
            if req.segment not in (pc.FULL_DEPTH, pc.FULL_ALL_EXITS):
                raise ProtocolError(S.REQ_BAD_SEGMENT, f"monolithic variant {req.segment}")
            have = self.backend.has_full if req.segment == pc.FULL_DEPTH else self.backend.has_all_exits
            if not have:
                raise ProtocolError(S.REQ_UNSUPPORTED, "that monolithic model is not on this device")
        policy = ExitDecider(_policy(req), self._quant) if req.mode == pc.MODE_EARLY_EXIT else None
        seg_in = req.segment if req.mode == pc.MODE_SEGMENT else 0
        x = self._input(req.slot, seg_in)
        ticks, decision = [0] * n, 0
        for _ in range(req.repeat):
            exit_k, logits, executed, spent = self._once(req, x, policy, ticks)
            decision += spent
        if req.mode == pc.MODE_FULL:
            ticks_out = (ticks[0],)
        elif req.mode == pc.MODE_SEGMENT:
            ticks_out = (ticks[req.segment],)
        else:
            ticks_out = tuple(ticks[:executed])
        return m.Result(req.mode, exit_k, ticks_out, tuple(int(v) for v in logits.reshape(-1)), TICK_HZ,
                        req.repeat, decision)

    def _input(self, slot: int, k: int) -> np.ndarray:
        spec = self.art.segments[k].inputs[0]
        size = spec.nbytes
        start = slot * size
        if start + size > self.capacity:
            raise ProtocolError(S.REQ_BAD_SLOT, f"slot {slot} of {size} bytes beyond capacity {self.capacity}")
        if start + size > self.valid:
            raise ProtocolError(S.REQ_INPUT_MISSING,
                                f"slot {slot} needs bytes up to {start + size}, loaded {self.valid}")
        return np.frombuffer(bytes(self.buffer[start:start + size]), np.int8).reshape(spec.shape)

    def _once(self, req: m.Run, x: np.ndarray, policy, ticks: list) -> tuple:
        clock = time.perf_counter_ns
        if req.mode == pc.MODE_FULL:
            t0 = clock()
            logits = self.backend.full(x, req.segment)
            ticks[0] += clock() - t0
            return self.art.n_segments - 1, logits, 1, 0
        if req.mode == pc.MODE_SEGMENT:
            t0 = clock()
            logits, _ = self.backend.segment(req.segment, x)
            ticks[req.segment] += clock() - t0
            return req.segment, logits, 1, 0
        last = req.segment if req.mode == pc.MODE_CHAIN else self.art.n_segments - 1
        spent = 0
        if policy is not None:
            policy.reset()
        for k in range(last + 1):
            t0 = clock()
            logits, x = self.backend.segment(k, x)
            ticks[k] += clock() - t0
            if policy is None or k == last:
                continue
            t1 = clock()
            leave = policy.passes(k, logits.reshape(-1).tolist())
            spent += clock() - t1
            if leave:
                return k, logits, k + 1, spent
        return last, logits, last + 1, spent


def _policy(req: m.Run) -> ExitPolicy:
    name = _POLICY_NAMES.get(req.policy)
    if name is None:
        raise ProtocolError(S.REQ_BAD_POLICY, f"policy id {req.policy}")
    try:
        return ExitPolicy(name, req.params)
    except UserError as exc:
        raise ProtocolError(S.REQ_BAD_PARAMS, str(exc)) from None


def _expect_empty(frame: Frame) -> None:
    if frame.payload:
        raise ProtocolError(S.REQ_PAYLOAD_SIZE, f"{frame.type_name} takes no payload, got {len(frame.payload)} bytes")


def _short(exc: ProtocolError) -> str:
    return str(exc).split(": ", 1)[-1][:pc.MAX_ERROR_TEXT]


def serve(link, core: DeviceCore, log=None) -> None:
    """Answer frames until the link closes."""
    from tinyexit.firmware_bridge.protocol.link import LinkClosed

    decoder = FrameDecoder(core.cfg.max_payload)
    link.write(core.boot_frame())
    try:
        while True:
            data = link.read(1.0)
            for event in decoder.feed(data) if data else ():
                link.write(core.handle(event))
    except LinkClosed as exc:
        if log:
            log(f"tinyexit agent: link closed ({exc}); {core.counts}")


def run_agent(cfg: AgentConfig) -> int:
    """Stage entry of the device side: load the artifact, then serve the port until it closes."""
    from tinyexit.firmware_bridge.protocol.link import SerialLink

    art = load_bundle(cfg.artifact)
    backend = make_backend(art, cfg.runtime, cfg.threads, kernels=cfg.kernels)
    core = DeviceCore(art, backend, cfg)
    link = SerialLink(cfg.port, cfg.baud, role="agent")
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    log(f"tinyexit agent: serving {art.model} (artifact {art.artifact_hash[:12]}, {art.n_segments} segments, "
        f"{backend.name}) on {cfg.port}")
    try:
        serve(link, core, log)
    finally:
        link.close()
    return 0
