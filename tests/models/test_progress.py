"""Training progress outside a terminal: plain lines at each quarter of a job's epochs, no carriage returns;
workers' reports reach the parent's one reporter through a queue."""
import io
import queue

from tinyexit.models.progress import EpochReporter, QueueListener, forward


def test_plain_lines_at_milestones_without_a_terminal():
    out = io.StringIO()
    rep = EpochReporter(8, stream=out)
    for e in range(8):
        rep("train a", e, 8, f"loss={e}")
    rep.close()
    assert out.getvalue().splitlines() == [f"train a: epoch {k}/8 loss={k - 1}" for k in (2, 4, 6, 8)]
    assert "\r" not in out.getvalue()


def test_worker_reports_reach_the_parent_in_order():
    got = []
    q = queue.Queue()
    listener = QueueListener(q, lambda *msg: got.append(msg))
    send = forward(q)
    send("train b", 0, 2, "x")
    send("train b", 1, 2, "y")
    listener.stop()
    assert got == [("train b", 0, 2, "x"), ("train b", 1, 2, "y")]
