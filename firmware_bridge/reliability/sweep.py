"""The noisy-line sweep: `run_sweep(run_dir, SweepConfig) -> rows`, and its table in docs/reliability.md.

Every mode, the whole test split, the session's defaults, on each target: a
fault run (clean, then faulty, compared key by key; fault_runs.py) at each
rate of `RATES`.  A row says whether the faulty results are complete and
identical to the clean ones, the payload efficiency of the inputs' transfer
(tensor bytes / LOAD_INPUT wire bytes, retransmissions included) and the
wall-time ratio faulty / clean measured in the same fault run, once per
`--fec` mode asked (e.g. off and auto: retransmission alone against forward
error correction).  A benchmark, not a test: it measures and reports.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tinyexit.errors import UserError
from tinyexit.firmware_bridge.reliability.fault_runs import FaultRunConfig, run_fault_benchmark

RATES = ((0.01, 0.005), (0.03, 0.01))  # (corrupt, drop) per byte, each direction: the two lines
BEGIN, END = "<!-- noisy-line sweep: begin -->", "<!-- noisy-line sweep: end -->"


@dataclass(frozen=True)
class SweepConfig:
    targets: tuple[str, ...] = ("agent", "qemu")
    rates: tuple[tuple[float, float], ...] = RATES
    modes: tuple[str, ...] = ("early_exit", "full", "segments")
    limit: int | None = None
    seed: int = 1
    name: str = "sweep"
    progress: bool = True
    fec: tuple[str, ...] = ("auto",)   # one row per mode and line


def run_sweep(run_dir, cfg: SweepConfig, log=print) -> list[dict]:
    rows = []
    for target in cfg.targets:
        for fec in cfg.fec:
            for corrupt, drop in cfg.rates:
                tag = f"{cfg.name}-c{corrupt * 100:g}-d{drop * 100:g}".replace(".", "p")
                tag += "" if fec == "auto" else f"-fec{fec}"
                fr = FaultRunConfig(target=target, corrupt=corrupt, drop=drop, seed=cfg.seed, modes=cfg.modes,
                                    limit=cfg.limit, name=tag, progress=cfg.progress, fec=fec)
                try:
                    rows.append(_row(run_fault_benchmark(run_dir, fr, log=log), corrupt, drop, fec))
                except UserError as exc:  # a line the link could not cope with is a row too, not the end
                    log(f"sweep: {target} at {corrupt:g}/{drop:g} (FEC {fec}): {exc}")
                    rows.append({"target": target, "corrupt": corrupt, "drop": drop, "fec": fec, "ok": False,
                                 "error": str(exc)})
    return rows


def _row(r: dict, corrupt: float, drop: float, fec: str = "auto") -> dict:
    clean_s, faults_s = r["wall_s"]["clean"], r["wall_s"]["faults"]
    link_fec = r["link"].get("fec") or {}
    return {"target": r["target"], "corrupt": corrupt, "drop": drop, "fec": fec, "expected": r["expected_results"],
            "lines": r["lines"], "ok": r["ok"], "lost": r["results_lost"], "duplicates": r["duplicates"],
            "different": sum(r["mismatches"].values()),
            "efficiency_clean": r["clean_link"].get("payload_efficiency"),
            "efficiency": r["link"].get("payload_efficiency"),
            "frame_error_rate": r["link"].get("frame_error_rate"), "retries": r["link"]["retries"],
            "chunk_min": r["link"].get("load_chunk_min"), "clean_s": clean_s, "faults_s": faults_s,
            "ratio": round(faults_s / clean_s, 2) if clean_s else None,
            "fec_frames": link_fec.get("frames_sent", 0), "fec_switched_s": link_fec.get("switched_at_s"),
            "fec_repaired": link_fec.get("repaired_frames", 0),
            "injected": (r.get("faults") or {}).get("injected"), "bench": r["bench"]["faults"]}


def table(rows: list[dict]) -> str:
    head = ("| target | line (per byte, each way) | FEC | results | identical to clean | payload efficiency clean → "
            "noisy | frame error rate | retries | smallest chunk | wall s clean → noisy | ratio |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|\n")
    body = "".join(
        f"| {r['target']} | {r['corrupt'] * 100:g} % corrupt + {r['drop'] * 100:g} % drop | {r.get('fec', 'auto')} "
        f"| failed: {r['error']} | | | | | | | |\n" if "error" in r else
        f"| {r['target']} | {r['corrupt'] * 100:g} % corrupt + {r['drop'] * 100:g} % drop | {_fec(r)} | {r['lines']} / "
        f"{r['expected']} | {'yes' if r['ok'] else 'NO'} ({r['different']} different, {r['lost']} lost, "
        f"{r['duplicates']} dup.) | {_pct(r['efficiency_clean'])} → {_pct(r['efficiency'])} | "
        f"{_pct(r['frame_error_rate'])} | {r['retries']} | {r['chunk_min']} B | {r['clean_s']} → {r['faults_s']} | "
        f"{r['ratio']}x |\n" for r in rows)
    return head + body


def _fec(r: dict) -> str:
    """The mode asked, and for auto/on whether (and when) requests went FEC."""
    mode = r.get("fec", "auto")
    if mode == "off":
        return "off"
    if r.get("fec_switched_s") is None:
        return f"{mode}: not used"
    return f"{mode}: from {r['fec_switched_s']:.1f} s, {r.get('fec_frames', 0)} frames"


def _pct(v) -> str:
    return "–" if v is None else f"{v * 100:.1f} %"


def write_doc(path: Path, rows: list[dict], command: str) -> None:
    """Replace the sweep's section of `path` (between its markers; appended the first time)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file; pass the docs/reliability.md of a checkout to --doc")
    text = path.read_text()
    section = (f"{BEGIN}\n`{command}` (all six modes, the whole test split, the session's defaults; "
               "wall-clock ratios measured within one fault run, on a 2-core shared machine):\n\n"
               f"{table(rows)}{END}")
    if BEGIN in text and END in text:
        text = text[:text.index(BEGIN)] + section + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n## The noisy-line sweep (issue 15)\n\n" + section + "\n"
    path.write_text(text)
