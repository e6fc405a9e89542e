"""summary.json, report.json and report.md of one run agree on every figure they share.

A real small run: the firmware_bridge fixture bundle (a genuine int8 export) benchmarked on the host agent,
then `write_report`.  Numbers in report.md are parsed and compared at the precision they are printed with.
`pytest tests/eval/test_figures_agree.py --tinyexit-run RUN` checks a run of your own (e.g. a demo) too.
"""
from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

LINK = ("frames", "retries", "crc_errors", "resyncs", "timeouts")
SCALE = {"%": 1e-2, "s": 1.0, "ms": 1e-3, "µs": 1e-6, "ns": 1e-9, "instr": 1.0, "": 1.0}


def printed(text: str) -> tuple[float, float] | None:
    """(value, half a unit of the last printed digit) of a number as report.md prints it; None for '–'."""
    text = text.strip()
    if text in ("–", ""):
        return None
    m = re.fullmatch(r"([+-]?[\d,]*\.?\d+)(?:e([+-]?\d+))?\s*(%|ms|µs|ns|s|instr)?", text)
    assert m, f"cannot parse printed number {text!r}"
    mant, exp, unit = m.group(1).replace(",", ""), int(m.group(2) or 0), m.group(3) or ""
    decimals = len(mant.partition(".")[2])
    scale = SCALE[unit]
    return float(mant) * 10 ** exp * scale, 0.5 * 10 ** (exp - decimals) * scale


def same(text: str, value, what: str) -> None:
    got = printed(text)
    if value is None:
        assert got is None, f"{what}: report.md prints {text!r}, summary.json has none"
        return
    assert got is not None, f"{what}: report.md prints nothing, summary.json has {value}"
    assert abs(got[0] - value) <= got[1] * (1 + 1e-9) + 1e-12 * abs(value), \
        f"{what}: report.md {text!r} vs summary.json {value}"


def table_rows(md: str, heading: str) -> list[list[str]]:
    part = md.split(heading, 1)[1]
    lines = [line for line in part.split("\n\n", 2)[1].splitlines() if line.startswith("| ")]
    return [[c.strip() for c in line.strip("|").split(" | ")] for line in lines[1:]]


def bench_md(md: str, name: str) -> str:
    part = md.split(f"## Bench on target `{name}`", 1)[1]
    return part.split("\n## ", 1)[0]


def check_run(run: Path) -> int:
    """Compare every shared figure; returns how many targets were checked."""
    report = json.loads((run / "report" / "report.json").read_text())
    md = (run / "report" / "report.md").read_text()
    benches = report.get("bench") or {}
    for name, t in benches.items():
        s = json.loads((run / "bench" / name / "summary.json").read_text())
        check_target(name, s, t, md)
    return len(benches)


def check_target(name: str, s: dict, t: dict, md: str) -> None:
    instr = t["latency_unit"] == "instructions"
    assert t["figures_from"] == "summary.json", name
    # report.json holds summary.json's numbers exactly
    rows = {r["index"]: r for r in s["per_exit"]}
    for e in t["per_exit"]:
        r = rows[e["exit"]]
        assert e["latency_median"] == r["latency_median_instructions" if instr else "latency_median"]
        for key in ("latency_ratio", "mac_ratio", "energy_j", "energy_ratio"):
            assert e[key] == r[key], (name, e["exit"], key)
        if instr:
            assert e["instructions_per_mac"] == r["instructions_per_mac"]
    ee, see = t["early_exit"], s.get("early_exit")
    if see:
        for key in ("accuracy", "mac_ratio", "latency_ratio", "exit_fractions", "samples", "energy_j"):
            assert ee[key] == see[key], (name, key)
    for key in ("agreement_top1", "agreement_exit", "logits_equal", "payload_efficiency"):
        assert t[key] == s[key], (name, key)
    assert {k: t["link"][k] for k in LINK} == {k: s["link"].get(k) for k in LINK}
    if instr:
        assert t["instructions_per_mac"] == s["instructions_per_mac"]
    energy = s["energy"]
    if energy["source"] == "modelled":
        assert t["energy_profile"]["name"] == energy["profile"]["name"]
    # report.md prints the same numbers
    sec = bench_md(md, name)
    table = table_rows(sec, "### Per exit")
    assert len(table) == len(s["per_exit"])
    for cells, r in zip(table, s["per_exit"]):
        what = f"{name} exit {r['index']}"
        assert int(cells[0]) == r["index"] and int(cells[1].replace(",", "")) == r["macs"]
        same(cells[2], r["mac_ratio"], what + " MAC ratio")
        same(cells[3], r["latency_median_instructions" if instr else "latency_median"], what + " latency")
        same(cells[5], r["latency_ratio"], what + " latency ratio")
        same(cells[7], r["energy_j"], what + " energy")
        same(cells[8], r["energy_ratio"], what + " energy ratio")
        assert cells[9] == {"modelled": "modelled", "none": "–"}.get(energy["source"], "measured"), what
    figures = {c[0]: c[1] for c in table_rows(sec, "Ratios are to the")}
    agree = figures["device-vs-host agreement: top-1 / exit / samples with identical int8 logits"].split(" / ")
    for text, key in zip(agree, ("agreement_top1", "agreement_exit", "logits_equal")):
        same(text, s[key], f"{name} {key}")
    link = figures["link: frames / retries / CRC errors / resyncs / timeouts"].split(" / ")
    for text, key in zip(link, LINK):
        same(text, s["link"].get(k := key), f"{name} link {k}")
    same(figures["payload efficiency (payload / wire bytes)"], s["payload_efficiency"], f"{name} payload efficiency")
    if energy["source"] == "modelled":
        assert f"Energy source: modelled: profile '{energy['profile']['name']}'" in sec
    if see:
        m = re.search(r"Early exit on the device \((\d+) samples, policy .*?\): accuracy (\S+ %|–), "
                      r"MAC ratio (\S+) \(analytic\), latency ratio (\S+) \(measured", sec)
        assert m, f"{name}: early-exit sentence not found"
        assert int(m.group(1)) == see["samples"]
        same(m.group(2), see["accuracy"], f"{name} early-exit accuracy")
        same(m.group(3), see["mac_ratio"], f"{name} early-exit MAC ratio")
        same(m.group(4), see["latency_ratio"], f"{name} early-exit latency ratio")
        head = {c[0]: c[1] for c in table_rows(md, "## Headline")}
        lat, _, mac = head[f"bench `{name}`: early-exit latency ratio vs MAC ratio (both vs full depth)"].partition(" vs ")
        same(lat, see["latency_ratio"], f"{name} headline latency ratio")
        same(mac, see["mac_ratio"], f"{name} headline MAC ratio")
    else:
        assert "Early exit on the device (0 samples" not in sec
    if instr and s.get("instructions_per_mac") is not None:
        head = {c[0]: c[1] for c in table_rows(md, "## Headline")}
        key = next(k for k in head if k.startswith(f"bench `{name}`: instructions per MAC"))
        same(head[key], s["instructions_per_mac"], f"{name} headline instructions per MAC")
        m = re.search(r"Instructions per MAC on the device, [^:]*: (\S+) ", sec)
        same(m.group(1), s["instructions_per_mac"], f"{name} instructions per MAC")


def _build_artifact():
    path = Path(__file__).resolve().parents[1] / "firmware_bridge" / "conftest.py"
    spec = importlib.util.spec_from_file_location("tinyexit_fixture_bundle", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.build_artifact


@pytest.fixture(scope="module")
def agent_run(tmp_path_factory) -> Path:
    from tinyexit.eval.report import write_report
    from tinyexit.firmware_bridge.harness.bench import BenchConfig, run_benchmark

    run = _build_artifact()(tmp_path_factory.mktemp("figures"))
    run_benchmark(run, ["agent"], BenchConfig(limit=40, repeats=2, warmup=1, progress=False), log=lambda m: None)
    write_report(run, progress=lambda m: None)
    return run


def test_three_files_of_a_host_agent_run_agree(agent_run):
    assert check_run(agent_run) == 1
    s = json.loads((agent_run / "bench" / "host-agent" / "summary.json").read_text())
    assert s["device_kind"] == "host" and s["energy"]["profile"]["name"] == "host-agent"
    assert s["early_exit"]["samples"] == 40 and s["early_exit"]["latency_ratio"] is not None


def test_a_report_that_changes_a_figure_is_caught(agent_run):
    md = (agent_run / "report" / "report.md").read_text()
    s = json.loads((agent_run / "bench" / "host-agent" / "summary.json").read_text())
    t = json.loads((agent_run / "report" / "report.json").read_text())["bench"]["host-agent"]
    wrong = f"latency ratio {s['early_exit']['latency_ratio'] + 0.01:.3f} (measured"
    bad = re.sub(r"latency ratio \S+ \(measured", wrong, md, count=1)
    with pytest.raises(AssertionError, match="early-exit latency ratio"):
        check_target("host-agent", s, t, bad)


def test_printed_precision():
    assert printed("98.4 %") == (pytest.approx(0.984), pytest.approx(0.0005))
    assert printed("221,120 instr") == (221120.0, 0.5)
    assert printed("1.5e-05") == (pytest.approx(1.5e-5), pytest.approx(5e-7))
    assert printed("2.31 ms") == (pytest.approx(2.31e-3), pytest.approx(5e-6))
    assert printed("–") is None


def test_a_given_run_agrees(request):
    run = request.config.getoption("--tinyexit-run", default=None)
    if not run:
        pytest.skip("no --tinyexit-run RUN given")
    assert check_run(Path(run)) >= 1
