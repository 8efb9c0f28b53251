"""The dynamic batcher: concurrent items share forward calls, each gets its own answer.

No test here reads a clock or sleeps to order events: the batch function is held at a gate
the test opens, and waits for company are either unbounded (the batch fills first) or zero,
so a loaded machine changes only how long the tests take, never what they see.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable
from typing import Any

import pytest

from gradwise.serving import batcher as batcher_module
from gradwise.serving.batcher import DynamicBatcher, ShuttingDown

FOREVER_MS = 3_600_000.0  # a wait for company no test may reach: an hour


class Recorder:
    """A batch function that records the batches it saw and the thread it ran on; with
    `hold`, a batch holding one of those items waits until the test opens the gate."""

    def __init__(self, fail_on: object = None, hold: tuple[object, ...] = ()) -> None:
        self.batches: list[list[object]] = []
        self.threads: set[str] = set()
        self.fail_on = fail_on
        self.hold = hold
        self.entered = threading.Event()  # a held batch is in the model
        self.gate = threading.Event()  # the test lets it finish

    def __call__(self, items: list[object]) -> list[object]:
        self.batches.append(list(items))
        self.threads.add(threading.current_thread().name)
        if any(item in self.hold for item in items):
            self.entered.set()
            self.gate.wait()
        if self.fail_on is not None and self.fail_on in items:
            raise ValueError(f"bad item {self.fail_on}")
        return [("answer", item) for item in items]


async def in_model(fn: Recorder) -> None:
    """Until a held batch is inside the batch function (waited for off the event loop)."""
    await asyncio.to_thread(fn.entered.wait)


async def let_the_loop_run() -> None:
    """Give every ready task its turns (the collector included) without any clock."""
    for _ in range(20):
        await asyncio.sleep(0)


def run(coro):
    return asyncio.run(coro)


def test_concurrent_items_share_forward_calls_and_get_their_own_answers():
    fn = Recorder()

    async def main():
        batcher = DynamicBatcher(fn, max_batch=16, max_wait_ms=0)
        await batcher.start()
        results = await asyncio.gather(*(batcher.submit(i) for i in range(40)))
        await batcher.close()
        return results

    results = run(main())
    assert results == [("answer", i) for i in range(40)]
    assert [len(b) for b in fn.batches] == [16, 16, 8]  # 3 calls, not 40
    assert all(t.startswith("batcher") for t in fn.threads)  # off the event loop


def test_rows_count_against_max_batch_and_a_large_item_runs_alone():
    fn = Recorder()

    async def main():
        batcher = DynamicBatcher(fn, max_batch=8, max_wait_ms=0, rows=len)
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
    fn = Recorder(hold=("slow",))

    async def main():
        batcher = DynamicBatcher(fn, max_batch=2, max_wait_ms=FOREVER_MS)
        await batcher.start()
        first = asyncio.ensure_future(batcher.submit("slow"))  # alone: runs at once
        await in_model(fn)
        a = asyncio.ensure_future(batcher.submit("a"))  # "slow" is in flight: a waits
        fn.gate.set()
        await first
        await let_the_loop_run()
        assert fn.batches == [["slow"]]  # a is still waiting for company
        b = asyncio.ensure_future(batcher.submit("b"))  # fills the batch: no more waiting
        await asyncio.gather(a, b)
        await batcher.close()

    run(main())
    assert fn.batches == [["slow"], ["a", "b"]]  # b joined a's batch during the wait


def test_lone_requests_do_not_wait(monkeypatch: pytest.MonkeyPatch):
    fn = Recorder()
    waits: list[float] = []

    async def no_wait(awaitable: Awaitable[Any], timeout: float) -> None:
        # stands in for the batcher's timed wait for company: counts it, and lets it end
        # at once as if the time were up
        waits.append(timeout)
        awaitable.close()  # type: ignore[attr-defined]
        raise TimeoutError

    monkeypatch.setattr(batcher_module.asyncio, "wait_for", no_wait)

    async def main():
        batcher = DynamicBatcher(fn, max_batch=64, max_wait_ms=FOREVER_MS)
        await batcher.start()
        for i in range(5):  # one client, one request after another: never company
            await batcher.submit(i)
        await batcher.close()

    run(main())
    assert fn.batches == [[0], [1], [2], [3], [4]]
    assert waits == []  # none of them waited for company


def test_a_failing_item_fails_alone():
    fn = Recorder(fail_on=3)

    async def main():
        batcher = DynamicBatcher(fn, max_batch=8, max_wait_ms=0)
        await batcher.start()
        results = await asyncio.gather(
            *(batcher.submit(i) for i in range(6)), return_exceptions=True
        )
        await batcher.close()
        return results

    results = run(main())
    assert isinstance(results[3], ValueError)
    assert [r for i, r in enumerate(results) if i != 3] == [("answer", i) for i in (0, 1, 2, 4, 5)]
    assert fn.batches[0] == list(range(6))  # tried together first, then one by one


def test_close_answers_everything_queued_then_refuses_new_items():
    fn = Recorder()

    async def main():
        batcher = DynamicBatcher(fn, max_batch=4, max_wait_ms=FOREVER_MS)
        await batcher.start()
        pending = [asyncio.ensure_future(batcher.submit(i)) for i in range(10)]
        await asyncio.sleep(0)  # queued, not yet answered
        await batcher.close()  # the last 2 do not wait for company: the batcher is closing
        with pytest.raises(ShuttingDown):
            await batcher.submit(99)
        return [p.result() for p in pending]

    assert run(main()) == [("answer", i) for i in range(10)]
    assert [len(b) for b in fn.batches] == [4, 4, 2]


def test_queue_depth_counts_waiting_rows():
    fn = Recorder(hold=([0, 0],))
    depths = []

    async def main():
        batcher = DynamicBatcher(fn, max_batch=2, max_wait_ms=0, rows=len)
        await batcher.start()
        pending = [asyncio.ensure_future(batcher.submit([i, i])) for i in range(4)]
        await in_model(fn)
        depths.append(batcher.queued_rows)
        fn.gate.set()
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
