"""Training progress: one bar per job in a terminal, a plain line per milestone otherwise.

Worker processes never draw; they send (job, epoch, epochs, metrics) to the parent through a
queue (`forward`), and the parent's `EpochReporter` shows one bar for all jobs, or, when stdout
is not a terminal (a log file, CI), one line per job at each quarter of its epochs.
"""
from __future__ import annotations

import sys
import threading


class EpochReporter:
    """Callable(job, epoch, epochs, metrics: str): the parent's one view of every job's epochs."""

    def __init__(self, total_epochs: int, desc: str = "train", stream=None):
        self.stream = stream or sys.stdout
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.bar = None
        if self.tty:
            from tqdm import tqdm

            self.bar = tqdm(total=total_epochs, desc=desc, unit="epoch", dynamic_ncols=True, file=self.stream,
                            leave=True)

    def __call__(self, job: str, epoch: int, epochs: int, metrics: str = "") -> None:
        done = epoch + 1
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix_str(f"{job} {done}/{epochs} {metrics}".strip())
        elif done == epochs or done % max(1, epochs // 4) == 0:
            print(f"{job}: epoch {done}/{epochs} {metrics}".rstrip(), file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class QueueListener:
    """Parent side of `forward`: a thread handing queued worker reports to a reporter."""

    def __init__(self, queue, reporter):
        self.queue, self.reporter = queue, reporter
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (msg := self.queue.get()) is not None:
            self.reporter(*msg)

    def stop(self) -> None:
        self.queue.put(None)
        self.thread.join()


class forward:  # noqa: N801 (a picklable callable, used like a function)
    """Worker side: report an epoch to the parent's queue."""

    def __init__(self, queue):
        self.queue = queue

    def __call__(self, job: str, epoch: int, epochs: int, metrics: str = "") -> None:
        self.queue.put((job, epoch, epochs, metrics))
