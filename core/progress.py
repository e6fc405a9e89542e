"""Progress for long jobs: a tqdm bar in a terminal, a plain line per quarter otherwise.

Outside a terminal (a log file, CI) a bar redraws with carriage returns and turns a
log into megabytes of partial lines; a line at 25/50/75/100 % says the same.
"""
from __future__ import annotations

import sys


class LineProgress:
    """The subset of tqdm's interface the stages use, printing one line per quarter of `total`."""

    def __init__(self, total: int, desc: str, unit: str, stream=None):
        self.total, self.desc, self.unit = int(total or 0), desc, unit
        self.stream = stream or sys.stderr
        self.n, self._next_quarter, self._postfix = 0, 1, ""

    def update(self, k: int = 1) -> None:
        self.n += k
        crossed = False
        while self.total and self._next_quarter <= 4 and self.n * 4 >= self._next_quarter * self.total:
            self._next_quarter += 1
            crossed = True
        if crossed:  # one line per update, however many quarters it crossed
            print(f"{self.desc}: {self.n}/{self.total} {self.unit}s{self._postfix}", file=self.stream, flush=True)

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:
        self._postfix = f" ({text})" if text else ""

    def set_description(self, desc: str, refresh: bool = True) -> None:
        self.desc = desc

    def write(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def close(self) -> None:
        pass


def progress_bar(total: int, desc: str, unit: str = "it", stream=None, **tqdm_kwargs):
    """tqdm when `stream` (default stderr) is a terminal, else a LineProgress."""
    stream = stream or sys.stderr
    if getattr(stream, "isatty", lambda: False)():
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, unit=unit, file=stream, **tqdm_kwargs)
    return LineProgress(total, desc, unit, stream)
