"""results.jsonl: one JSON object per line, appended and flushed as each result arrives.

A run killed mid-write can leave a torn last line.  Reading detects it (no
trailing newline, or a last line that is not JSON); resuming moves those bytes
to results.jsonl.torn and truncates the file to its last whole line, so every
line written before stays and nothing torn is ever parsed.  A damaged line in
the middle is not something a crash produces: it stops the run with a message.
"""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from tinyexit.errors import UserError


def record_key(rec: dict) -> tuple:
    return (rec.get("model", "classifier"), int(rec["sample"]), rec["mode"], int(rec.get("repeat", 0)))


def read_results(path: Path) -> tuple[list[dict], dict | None]:
    """(records, torn) where torn describes a discarded partial last line, or None."""
    path = Path(path)
    if not path.is_file():
        return [], None
    data = path.read_bytes()
    good_end = data.rfind(b"\n") + 1
    tail = data[good_end:]
    body = data[:good_end]
    records = []
    lines = body.split(b"\n")[:-1] if body else []
    for i, line in enumerate(lines):
        try:
            records.append(json.loads(line))
        except (json.JSONDecodeError, UnicodeDecodeError):
            if i == len(lines) - 1 and not tail:
                tail, good_end = line + b"\n", good_end - len(line) - 1
                break
            raise UserError(f"{path}: line {i + 1} is not valid JSON and is not the last line; the file was "
                            "edited or damaged: move it away and re-run the benchmark") from None
    torn = {"bytes": len(tail), "offset": good_end, "text": tail[:80].decode("utf-8", "replace")} if tail else None
    return records, torn


class ResultsWriter:
    """Appends records; thread-safe; `done` holds the keys already present."""

    def __init__(self, path: Path, resume: bool, log=print):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        records, torn = read_results(self.path)
        if (records or torn) and not resume:
            raise UserError(f"{self.path}: holds {len(records)} results from an earlier run; pass --resume to "
                            "continue it, or --name to write a new bench directory")
        self.torn = torn
        if torn:
            self._discard_torn(torn, log)
        self.done = {record_key(r) for r in records}
        self.previous = len(records)
        self._lock = threading.Lock()
        self._f = open(self.path, "a", encoding="utf-8")

    def _discard_torn(self, torn: dict, log) -> None:
        with open(self.path, "rb") as f:
            f.seek(torn["offset"])
            tail = f.read()
        keep = self.path.with_name(self.path.name + ".torn")
        with open(keep, "ab") as f:
            f.write(tail + b"\n")
        with open(self.path, "r+b") as f:
            f.truncate(torn["offset"])
        torn["saved_to"] = str(keep)
        log(f"{self.path}: discarded a torn last line ({torn['bytes']} bytes, left by an interrupted run); "
            f"its bytes are kept in {keep}")

    def append(self, rec: dict) -> None:
        line = json.dumps(rec, separators=(",", ":")) + "\n"
        with self._lock:
            try:
                self._f.write(line)
                self._f.flush()
            except OSError as exc:  # disk full, file-size limit: the line may be torn; --resume discards it
                raise UserError(f"{self.path}: cannot append a result ({exc.strerror or exc}); free disk space "
                                "(or raise the file-size limit), then re-run with --resume") from None
            self.done.add(record_key(rec))

    def close(self) -> None:
        with self._lock:
            if self._f.closed:
                return
            try:
                self._f.flush()
                os.fsync(self._f.fileno())
            except OSError:
                pass  # append() already reported it; what reached the disk stays
            try:
                self._f.close()
            except OSError:
                pass
