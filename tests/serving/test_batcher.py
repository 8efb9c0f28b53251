"""The dynamic batcher: concurrent items share forward calls, each gets its own answer."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from gradwise.serving.batcher import DynamicBatcher, ShuttingDown


class Recorder:
    """A batch function that records the batches it saw and the thread it ran on."""

    def __init__(self, delay_s: float = 0.0, fail_on: object = None) -> None:
        self.batches: list[list[object]] = []
        self.threads: set[str] = set()
        self.delay_s = delay_s
        self.fail_on = fail_on

    def __call__(self, items: list[object]) -> list[object]:
        self.batches.append(list(items))
        self.threads.add(threading.current_thread().name)
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.fail_on is not None and self.fail_on in items:
            raise ValueError(f"bad item {self.fail_on}")
        return [("answer", item) for item in items]


def run(coro):
    return asyncio.run(coro)


def test_concurrent_items_share_forward_calls_and_get_their_own_answers():
    fn = Recorder(delay_s=0.01)

    async def main():
        batcher = DynamicBatcher(fn, max_batch=16, max_wait_ms=50)
        await batcher.start()
        results = await asyncio.gather(*(batcher.submit(i) for i in range(40)))
        await batcher.close()
        return results

    results = run(main())
    assert results == [("answer", i) for i in range(40)]
    assert len(fn.batches) == 3  # 16 + 16 + 8, not 40 calls
    assert [len(b) for b in fn.batches] == [16, 16, 8]
    assert all(t.startswith("batcher") for t in fn.threads)  # off the event loop


def test_rows_count_against_max_batch_and_a_large_item_runs_alone():
    fn = Recorder()

    async def main():
        batcher = DynamicBatcher(fn, max_batch=8, max_wait_ms=20, rows=len)
        await batcher.start()
        items = [[1] * 3, [2] * 3, [3] * 3, [4] * 20]
        results = await asyncio.gather(*(batcher.submit(x) for x in items))
        await batcher.close()
        return results

    results = run(main())
    assert [r[1][0] for r in results] == [1, 2, 3, 4]
    sizes = [sum(len(x) for x in b) for b in fn.batches]
    assert sizes == [6, 3, 20]  # 3 + 3 fit in 8; the third 3 would not; 20 alone


def test_a_request_waits_for_company_while_others_are_in_flight():
    fn = Recorder()
    slow = Recorder(delay_s=0.06)

    def batch(items):
        return (slow if "slow" in items else fn)(items)

    async def main():
        batcher = DynamicBatcher(batch, max_batch=64, max_wait_ms=40)
        await batcher.start()
        first = asyncio.ensure_future(batcher.submit("slow"))  # alone: runs at once
        await asyncio.sleep(0.01)
        a = asyncio.ensure_future(batcher.submit("a"))  # "slow" is in flight: a waits
        await asyncio.sleep(0.07)  # "slow" is done; a's wait for company has begun
        b = asyncio.ensure_future(batcher.submit("b"))
        await asyncio.gather(first, a, b)
        await batcher.close()

    run(main())
    assert slow.batches == [["slow"]]
    assert fn.batches == [["a", "b"]]  # b joined a's batch during the wait


def test_lone_requests_do_not_wait():
    fn = Recorder()

    async def main():
        batcher = DynamicBatcher(fn, max_batch=64, max_wait_ms=200)
        await batcher.start()
        started = time.perf_counter()
        for i in range(5):  # one client, one request after another: never company
            await batcher.submit(i)
        took = time.perf_counter() - started
        await batcher.close()
        return took

    assert run(main()) < 0.5  # waiting for company would take 5 x 200 ms
    assert fn.batches == [[0], [1], [2], [3], [4]]


def test_a_failing_item_fails_alone():
    fn = Recorder(fail_on=3)

    async def main():
        batcher = DynamicBatcher(fn, max_batch=8, max_wait_ms=20)
        await batcher.start()
        results = await asyncio.gather(
            *(batcher.submit(i) for i in range(6)), return_exceptions=True
        )
        await batcher.close()
        return results

    results = run(main())
    assert isinstance(results[3], ValueError)
    assert [r for i, r in enumerate(results) if i != 3] == [("answer", i) for i in (0, 1, 2, 4, 5)]


def test_close_answers_everything_queued_then_refuses_new_items():
    fn = Recorder(delay_s=0.02)

    async def main():
        batcher = DynamicBatcher(fn, max_batch=4, max_wait_ms=1)
        await batcher.start()
        pending = [asyncio.ensure_future(batcher.submit(i)) for i in range(10)]
        await asyncio.sleep(0)  # queued, not yet answered
        await batcher.close()
        with pytest.raises(ShuttingDown):
            await batcher.submit(99)
        return [p.result() for p in pending]

    assert run(main()) == [("answer", i) for i in range(10)]


def test_queue_depth_counts_waiting_rows():
    fn = Recorder(delay_s=0.05)
    depths = []

    async def main():
        batcher = DynamicBatcher(fn, max_batch=2, max_wait_ms=0, rows=len)
        await batcher.start()
        pending = [asyncio.ensure_future(batcher.submit([i, i])) for i in range(4)]
        await asyncio.sleep(0.01)
        depths.append(batcher.queued_rows)
        await asyncio.gather(*pending)
        depths.append(batcher.queued_rows)
        await batcher.close()

    run(main())
    assert depths == [6, 0]  # one item in the model, three (six rows) waiting; then none


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="max_batch"):
        DynamicBatcher(Recorder(), max_batch=0)
    with pytest.raises(ValueError, match="max_wait_ms"):
        DynamicBatcher(Recorder(), max_wait_ms=-1)
