"""One benchmark worker per target: connect, check the artifact, stream a shard, survive resets.

Inputs travel in batches: as many samples as the device's input buffer holds,
in LOAD_INPUT frames as its max payload allows, then one RUN per
(sample, mode, repeat) naming the sample's slot.  A device that restarts gets
a fresh handshake, the batch is loaded again and the run continues where it
stopped; results already written are skipped, so every key appears exactly
once.  A restart is noticed three ways: the device's unsolicited boot INFO;
a device that no longer holds the inputs it acknowledged (its boot INFO was
lost on a noisy line: the HELLO that follows shows the new session); and a
device the harness started that died (it is started again).  At most
`max_resets` per worker.
"""
from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tinyexit.errors import UserError
from tinyexit.firmware_bridge.protocol import messages as m
from tinyexit.firmware_bridge.protocol import constants as pc
from tinyexit.bundle import Bundle
from tinyexit.firmware_bridge.harness.reference import (HostReference, compare, compute_reference, reference_spec,
                                                        wire_policy)
from tinyexit.firmware_bridge.harness.session import DeviceError, DeviceGone, DeviceReset, DeviceSession
from tinyexit.firmware_bridge.harness.targets import start_target

# The host reference runs what the device runs where the host can: ONNX Runtime for an ONNX agent, TFLite
# Micro for firmware (generated C is checked byte for byte against it), LiteRT otherwise.
_REFERENCE_RUNTIME = {pc.RUNTIME_ONNXRUNTIME: "onnxruntime", pc.RUNTIME_TFLM: "tflm", pc.RUNTIME_GENERATED_C: "tflm"}
# Refusals of inputs this worker loaded and the device acknowledged: the device lost its state (it rebooted).
_LOST_STATE = (pc.Status.REQ_INPUT_MISSING, pc.Status.REQ_INPUT_RANGE)


@dataclass
class BenchContext:
    run: Path                            # the output root: the run directory, or a bundle directory benched alone
    art: Bundle
    x: np.ndarray
    y: np.ndarray
    cfg: object
    writer: object
    multi: bool
    log: object = print
    monitor: object = None               # an open power monitor (power.py), or None: energy is modelled
    t: np.ndarray | None = None          # the denoiser's diffusion step of each input (the bundle's inputs.npz)
    abort: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self):
        self.modes = []
        for mode in self.cfg.modes:
            if mode == "segments":
                self.modes += [f"segment:{k}" for k in range(self.art.n_segments)]
            elif mode == "full" and self.art.manifest.get("files", {}).get("all_exits_tflite"):
                self.modes += ["full", "full:all_exits"]
            else:
                self.modes.append(mode)
        self._refs: dict = {}
        self._lock = threading.Lock()
        pending = {s for s in range(len(self.y)) if not self.all_done(s)}
        self.pending_samples = len(pending)
        self._bar = None
        if self.cfg.progress:
            from tinyexit.progress import progress_bar

            self._bar = progress_bar(self.pending_samples, "bench", "sample", smoothing=0.1)

    def key(self, sample: int, mode: str, repeat: int) -> tuple:
        return (self.art.model, sample, mode, repeat)

    def all_done(self, sample: int) -> bool:
        return all(self.key(sample, mode, r) in self.writer.done
                   for mode in self.modes for r in range(self.cfg.repeats))

    def reference(self, runtime: str) -> HostReference:
        with self._lock:
            if runtime not in self._refs:
                self._refs[runtime] = compute_reference(self.art, self.x, self.art.policy, runtime)
            return self._refs[runtime]

    def tick(self) -> None:
        if self._bar is not None:
            with self._lock:
                self._bar.update(1)

    def close_progress(self) -> None:
        if self._bar is not None:
            self._bar.close()


class Worker:
    def __init__(self, index: int, spec: str, samples: list[int], ctx: BenchContext):
        self.index, self.spec, self.samples, self.ctx = index, spec, samples, ctx
        self.error: BaseException | None = None
        self.stats = None
        self.info: m.Info | None = None
        self.target = None
        self.name = spec
        self.rtt_s: dict[str, float] = {}
        self.unsupported: list[str] = []
        self.energy: dict = {}
        self.reference_runtime = "litert"
        self.resets = 0

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # handed to the main thread, which raises it after every worker stopped
            self.error = exc

    def _run(self) -> None:
        ctx = self.ctx
        target = start_target(self.spec, ctx.run, ctx.art.dir, ctx.cfg, ctx.writer.path.parent, self.index)
        self.target = target
        self.name = f"{target.name}#{self.index}" if ctx.multi else target.name
        try:
            session = DeviceSession(target.link, ctx.cfg.session, target.alive)
            self.stats = session.stats
            self._connect(session)
            ref = ctx.reference(self._reference_runtime())
            modes = [mode for mode in ctx.modes if mode not in self.unsupported]
            todo = [s for s in self.samples if not ctx.all_done(s)]
            warm = ctx.cfg.warmup
            for batch in _batches(todo, self._batch_size()):
                if ctx.abort.is_set():
                    return
                self._batch(session, batch, modes, ref, warm)
                warm = 0
            if ctx.monitor is not None:
                from tinyexit.firmware_bridge.harness.measured_energy import measure_energy

                self.energy = measure_energy(self, session, modes)
        finally:
            target.close()

    def _reference_runtime(self) -> str:
        wanted = _REFERENCE_RUNTIME.get(self.info.runtime, "litert")
        if wanted == "tflm":
            try:
                import tflite_micro  # noqa: F401  (host-side only: part of the export extra)
            except ImportError:
                self.ctx.log("bench: tflite-micro not installed; comparing the firmware with LiteRT instead")
                return "litert"
        wanted = reference_spec(self.info.runtime_name, wanted)  # the device's kernel set (reference.py)
        self.reference_runtime = wanted
        return wanted

    # --- session -------------------------------------------------------------------
    def _connect(self, session: DeviceSession) -> None:
        art, url = self.ctx.art, self.target.url
        # A device we started (or one that just rebooted) may take a while to boot; a device that
        # should already be running gets the ordinary retry budget, so a dead port fails fast.
        scfg = self.ctx.cfg.session
        booting = self.target.kind in ("agent", "qemu") or self.info is not None
        info = session.handshake(None if booting else scfg.reply_timeout_s * (scfg.max_retries + 1))
        if info.hash_hex != art.artifact_hash:
            raise UserError(f"device at {url} runs artifact {info.hash_hex[:16]}, but {art.dir}/manifest.json is "
                            f"{art.artifact_hash[:16]}; refusing to benchmark a model this host did not export: "
                            f"copy {art.dir} to the device (or rebuild the firmware) and restart it")
        if (info.n_segments, info.n_logits, info.input_bytes) != (art.n_segments, art.num_classes, art.input.nbytes):
            raise UserError(f"device at {url} reports {info.n_segments} segments, {info.n_logits} logits, "
                            f"{info.input_bytes}-byte input; the manifest says {art.n_segments}, {art.num_classes}, "
                            f"{art.input.nbytes}; re-export or reflash")
        if info.input_capacity < art.input.nbytes:
            raise UserError(f"device at {url}: input buffer {info.input_capacity} bytes < one input "
                            f"({art.input.nbytes} bytes)")
        if art.policy and "early_exit" in self.ctx.modes and not info.policies >> art.policy.policy_id & 1:
            raise UserError(f"device at {url} does not implement exit policy '{art.policy.name}'")
        needed = {"early_exit": pc.CAP_EARLY_EXIT, "full": pc.CAP_FULL, "full:all_exits": pc.CAP_FULL_ALL_EXITS}
        self.unsupported = [mode for mode in self.ctx.modes
                            if not info.capabilities & needed.get(mode, pc.CAP_CHAIN)]
        if self.unsupported and self.info is None:
            self.ctx.log(f"bench: {url} cannot run {', '.join(self.unsupported)}; skipped")
        self.info = info

    def _batch_size(self) -> int:
        per = self.ctx.art.input.nbytes
        return max(1, min(self.info.input_capacity // per, 256))

    def _chunk(self) -> int:
        room = min(self.info.max_payload, pc.MAX_PAYLOAD) - pc.LOAD_FIXED_SIZE
        per = self.ctx.art.input.nbytes
        return room // per * per if room >= per else room

    def _batch(self, session, batch: list[int], modes: list[str], ref: HostReference, warm: int) -> None:
        while True:
            try:
                self._load(session, batch)
                for _ in range(warm):
                    for mode in modes:
                        session.run(self._request(mode, 0))
                warm = 0
                self._stream(session, batch, modes, ref)
                return
            except DeviceReset as exc:
                self._recover(session, f"restarted (session {exc.info.session:08x})")
            except DeviceGone as exc:
                if self.target.restarter is None:
                    raise
                self._recover(session, f"went away ({exc})", restart=True)
            except DeviceError as exc:
                if exc.error.code not in _LOST_STATE:
                    raise
                self._recover(session, f"lost the inputs it acknowledged ({exc.error.describe()})")

    def _recover(self, session, what: str, restart: bool = False) -> None:
        """Reconnect after a device restart (restarting it first when it died); bounded by max_resets."""
        self.resets += 1
        if self.resets > self.ctx.cfg.max_resets:
            raise UserError(f"device at {self.target.url} {what}: {self.resets} restarts, more than --max-resets "
                            f"{self.ctx.cfg.max_resets}; giving up (results so far are kept; fix the device and "
                            "re-run with --resume)") from None
        self.ctx.log(f"bench: {self.name} {what}; reconnecting")
        if not what.startswith("restarted"):  # a boot INFO was already counted by the session
            session.stats.resets += 1
        while True:
            try:
                if restart:
                    session.stats.restarts += 1
                    self.target.restart()
                    session.relink(self.target.link)
                self._connect(session)
                return
            except DeviceGone as exc:  # it died again while booting
                if self.target.restarter is None:
                    raise
                self.resets += 1
                if self.resets > self.ctx.cfg.max_resets:
                    raise UserError(f"device at {self.target.url} keeps dying ({exc}); giving up after "
                                    f"{self.resets} restarts (results so far are kept)") from None
                restart = True

    def _load(self, session, batch: list[int]) -> None:
        data = np.ascontiguousarray(self.ctx.x[batch]).tobytes()
        bar = None
        # On a noisy line the preload takes long enough to need its own bar; in a log (not a terminal) the
        # bench's own lines say enough, and a bar per batch would only add carriage-return walls.
        if self.ctx.cfg.progress and sys.stderr.isatty():
            from tqdm import tqdm

            bar = tqdm(total=len(data), unit="B", unit_scale=True, leave=False,
                       desc=f"load {len(batch)} inputs{f' ({self.name})' if self.ctx.multi else ''}")
        done = [0]

        def progress(pos: int) -> None:
            bar.update(pos - done[0])
            done[0] = pos

        try:
            valid = session.load(0, data, self._chunk(), progress if bar is not None else None)
        finally:
            if bar is not None:
                bar.close()
        if valid < len(data):
            raise UserError(f"device at {self.target.url} acknowledged {valid} of {len(data)} input bytes")

    def _stream(self, session, batch: list[int], modes: list[str], ref: HostReference) -> None:
        ctx = self.ctx
        for slot, sample in enumerate(batch):
            if ctx.all_done(sample):
                continue
            for r in range(ctx.cfg.repeats):
                for mode in modes:
                    if ctx.abort.is_set():
                        return
                    if ctx.key(sample, mode, r) in ctx.writer.done:
                        continue
                    t0 = time.perf_counter()
                    res = session.run(self._request(mode, slot))
                    rtt = time.perf_counter() - t0
                    self.rtt_s[mode] = self.rtt_s.get(mode, 0.0) + rtt
                    ctx.writer.append(self._record(sample, mode, r, res, ref, rtt))
            ctx.tick()

    def _request(self, mode: str, slot: int, repeat: int = 1) -> m.Run:
        if mode == "early_exit":
            p = wire_policy(self.ctx.art.policy)
            return m.Run(pc.MODE_EARLY_EXIT, 0, p.policy_id, p.params, repeat, slot)
        if mode == "full":
            return m.Run(pc.MODE_FULL, pc.FULL_DEPTH, 0, (), repeat, slot)
        if mode == "full:all_exits":
            return m.Run(pc.MODE_FULL, pc.FULL_ALL_EXITS, 0, (), repeat, slot)
        return m.Run(pc.MODE_CHAIN, int(mode.split(":")[1]), 0, (), repeat, slot)

    def _record(self, sample: int, mode: str, r: int, res: m.Result, ref: HostReference, rtt: float) -> dict:
        logits = np.asarray(res.logits, dtype=np.int64)
        host_exit = ref.exit_for(mode, sample)
        host_logits = ref.logits_for(mode, sample, host_exit)
        rec = {"model": self.ctx.art.model, "sample": int(sample), "mode": mode, "repeat": r, "device": self.name,
               "exit": res.exit, "top1": int(np.argmax(logits)), "label": int(self.ctx.y[sample]),
               "logits": logits.tolist(), "ticks": list(res.ticks), "tick_hz": res.tick_hz,
               "decision_ticks": res.decision_ticks, "runs": res.repeat}
        if self.ctx.t is not None:
            rec["t"] = int(self.ctx.t[sample])
        if getattr(self.target, "place", None):  # a labgrid place: per-place figures in summary.json
            rec["place"] = self.target.place
        if host_logits is not None:
            rec.update(compare(ref, mode, sample, res.exit, logits))
        counts = self.target.instruction_counts(res) if self.target.instruction_counts else None
        if counts:  # QEMU with the counting plugin: exact instructions beside the ticks
            rec.update(counts)
        rec["rtt_s"] = round(rtt, 6)
        return rec


def _batches(items: list[int], size: int):
    for i in range(0, len(items), size):
        yield items[i:i + size]
