"""core.progress: outside a terminal a long job prints one line per quarter, never carriage returns."""
import io

from tinyexit.progress import LineProgress, progress_bar


def test_a_pipe_gets_four_plain_lines_for_any_number_of_updates():
    out = io.StringIO()
    bar = progress_bar(447, "bench", "sample", stream=out, smoothing=0.1)
    assert isinstance(bar, LineProgress)
    for _ in range(447):
        bar.update(1)
    bar.close()
    lines = out.getvalue().splitlines()
    assert lines == ["bench: 112/447 samples", "bench: 224/447 samples", "bench: 336/447 samples",
                     "bench: 447/447 samples"]
    assert "\r" not in out.getvalue()


def test_a_jump_past_several_quarters_prints_one_line_with_the_postfix():
    out = io.StringIO()
    bar = LineProgress(10, "fuzz", "input", out)
    bar.set_postfix_str("0 violations")
    bar.update(10)
    bar.update(0)
    assert out.getvalue().splitlines() == ["fuzz: 10/10 inputs (0 violations)"]
