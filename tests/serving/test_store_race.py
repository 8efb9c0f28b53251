"""The prediction store counts every record it is given, from any number of threads: put()
runs on the event loop and in Starlette's thread pool at once."""

from __future__ import annotations

import threading
import time

from gradwise.serving.store import FeedbackRecord, PredictionStore

N_THREADS = 4
PUTS_EACH = 1_000


class YieldingCount(int):
    """A count whose `+ 1` gives the other threads a turn between the read and the write of
    `n_queued += 1`: CPython 3.11 seldom switches threads there, a free-threaded build or a
    longer critical section can, and an unlocked counter then loses counts."""

    def __add__(self, other: object) -> YieldingCount:
        assert isinstance(other, int)
        value = int(self) + other
        time.sleep(0)  # let another thread read the same old value
        return YieldingCount(value)


def test_put_from_many_threads_counts_every_record(tmp_path):
    store = PredictionStore(f"sqlite:///{tmp_path / 'p.sqlite'}", "test")  # never started
    store.n_queued = YieldingCount(0)
    record = FeedbackRecord("r", 0, 0.0, 1)
    go = threading.Barrier(N_THREADS)

    def hammer() -> None:
        go.wait()
        for _ in range(PUTS_EACH):
            store.put(record)

    threads = [threading.Thread(target=hammer) for _ in range(N_THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store._queue.qsize() == N_THREADS * PUTS_EACH
    assert store.n_queued == N_THREADS * PUTS_EACH
    assert store.pending == N_THREADS * PUTS_EACH  # what flush() waits for
