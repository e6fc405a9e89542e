"""The noisy-line sweep's table and its section of docs/reliability.md (the figures come from `--sweep` runs)."""
import pytest

from tinyexit.errors import UserError
from tinyexit.firmware_bridge.reliability.sweep import BEGIN, END, table, write_doc

ROW = {"target": "agent", "corrupt": 0.01, "drop": 0.005, "expected": 2682, "lines": 2682, "ok": True, "lost": 0,
       "duplicates": 0, "different": 0, "efficiency_clean": 0.978593, "efficiency": 0.239289,
       "frame_error_rate": 0.665482, "retries": 8236, "chunk_min": 9, "clean_s": 5.0, "faults_s": 37.8, "ratio": 7.56,
       "fec": "off"}
FEC_ROW = {**ROW, "fec": "auto", "fec_switched_s": 0.42, "fec_frames": 5321, "efficiency": 0.65}


def test_rows_render_exactly_and_a_failed_line_is_a_row():
    failed = {"target": "qemu", "corrupt": 0.03, "drop": 0.01, "ok": False, "error": "no HELLO got through"}
    lines = table([ROW, FEC_ROW, {**FEC_ROW, "fec_switched_s": None}, failed]).splitlines()
    assert lines[2] == ("| agent | 1 % corrupt + 0.5 % drop | off | 2682 / 2682 | yes (0 different, 0 lost, 0 dup.) | "
                        "97.9 % → 23.9 % | 66.5 % | 8236 | 9 B | 5.0 → 37.8 | 7.56x |")
    assert lines[3].startswith("| agent | 1 % corrupt + 0.5 % drop | auto: from 0.4 s, 5321 frames | 2682 / 2682 |")
    assert "| 97.9 % → 65.0 % |" in lines[3] and "| auto: not used |" in lines[4]
    assert lines[5] == "| qemu | 3 % corrupt + 1 % drop | auto | failed: no HELLO got through | | | | | | | |"


def test_the_doc_section_is_replaced_not_repeated(tmp_path):
    doc = tmp_path / "reliability.md"
    doc.write_text("# Reliability\n\ntext\n")
    write_doc(doc, [ROW], "cmd 1")
    write_doc(doc, [{**ROW, "ratio": 9.0}], "cmd 2")
    text = doc.read_text()
    assert text.count(BEGIN) == text.count(END) == 1 and "cmd 2" in text and "cmd 1" not in text
    assert text.startswith("# Reliability\n\ntext\n") and "| 9.0x |" in text
    with pytest.raises(UserError, match="nowhere.md: no such file"):
        write_doc(tmp_path / "nowhere.md", [ROW], "cmd")
