"""Dynamic batching: concurrent requests grouped into one forward pass, answered one by one.

Requests arrive on the event loop; `submit` queues an item and awaits its result. One
collector task takes the first waiting item, then keeps taking items until the batch holds
`max_batch` rows or `max_wait_ms` has passed since the first arrived, and hands the batch to
a single worker thread, so the event loop keeps accepting requests while the model runs.
Under load the queue fills while a batch is in the model, so batches form without waiting.
A request that arrives while no other is in flight (an unloaded server, or one client
sending one request after another) runs at once instead of waiting for company that is not
coming, so it is answered in the time of one forward pass.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class ShuttingDown(RuntimeError):
    """The batcher no longer accepts work (the server is stopping)."""


@dataclass
class _Pending(Generic[T, R]):
    item: T
    rows: int
    future: asyncio.Future[R]
    lone: bool = False  # nothing else was in flight when it arrived


class DynamicBatcher(Generic[T, R]):
    """Groups concurrent items into batches for one call of `fn` in a worker thread.

    Args:
        fn: items -> one result per item, in order; runs in the worker thread. An exception
            it raises is given to every item of the batch (see `isolate_failures`).
        max_batch: most rows in one call (an item larger than this runs alone).
        max_wait_ms: longest time the first item of a batch waits for company.
        rows: how many rows an item holds (default 1).
        on_batch: called on the event loop with each batch's row count (metrics).
        isolate_failures: when a batch fails, rerun its items one by one, so a bad item
            fails alone instead of taking its neighbours with it.
    """

    def __init__(
        self,
        fn: Callable[[list[T]], list[R]],
        max_batch: int = 32,
        max_wait_ms: float = 2.0,
        rows: Callable[[T], int] | None = None,
        on_batch: Callable[[int], None] | None = None,
        isolate_failures: bool = True,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be 0 or more, got {max_wait_ms}")
        self.fn = fn
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000.0
        self._rows = rows or (lambda _: 1)
        self._on_batch = on_batch
        self._isolate = isolate_failures
        self._waiting: collections.deque[_Pending[T, R]] = collections.deque()
        self._arrived: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._accepting = False
        self.queued_rows = 0  # rows waiting for a batch (the queue-depth gauge)
        self.n_batches = 0
        self.in_flight = 0  # items submitted and not yet answered

    @property
    def is_running(self) -> bool:
        return self._task is not None and not self._task.done() and self._accepting

    async def start(self) -> None:
        """Start the collector on the running event loop."""
        if self._task is not None:
            return
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="batcher")
        self._arrived = asyncio.Event()
        self._accepting = True
        self._task = asyncio.get_running_loop().create_task(self._collect())

    async def submit(self, item: T) -> R:
        """Queue `item` and wait for its result.

        Raises:
            ShuttingDown: the batcher was closed or never started.
        """
        if not self._accepting or self._arrived is None:
            raise ShuttingDown("the server is shutting down")
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        rows = self._rows(item)
        self.queued_rows += rows
        self._waiting.append(_Pending(item, rows, future, lone=self.in_flight == 0))
        self.in_flight += 1
        self._arrived.set()
        try:
            return await future
        finally:
            self.in_flight -= 1

    async def close(self) -> None:
        """Stop accepting items, answer every item already queued, then stop the worker."""
        self._accepting = False
        if self._task is not None and self._arrived is not None:
            self._arrived.set()
            await self._task
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    async def _collect(self) -> None:
        loop = asyncio.get_running_loop()
        arrived = self._arrived
        assert arrived is not None
        while True:
            if not self._waiting:
                if not self._accepting:
                    return  # closed, and everything accepted has been answered
                arrived.clear()
                await arrived.wait()
                continue
            deadline = loop.time() + self.max_wait_s
            wait = not (len(self._waiting) == 1 and self._waiting[0].lone)
            while wait and self._accepting and self.queued_rows < self.max_batch:
                timeout = deadline - loop.time()
                if timeout <= 0:
                    break
                arrived.clear()
                try:
                    await asyncio.wait_for(arrived.wait(), timeout)
                except TimeoutError:
                    break
            batch, n_rows = self._take()
            await self._run(loop, batch, n_rows)

    def _take(self) -> tuple[list[_Pending[T, R]], int]:
        """The oldest waiting items, up to max_batch rows (at least one item)."""
        batch = [self._waiting.popleft()]
        n_rows = batch[0].rows
        while self._waiting and n_rows + self._waiting[0].rows <= self.max_batch:
            nxt = self._waiting.popleft()
            batch.append(nxt)
            n_rows += nxt.rows
        self.queued_rows -= n_rows
        return batch, n_rows

    async def _run(
        self, loop: asyncio.AbstractEventLoop, batch: list[_Pending[T, R]], n_rows: int
    ) -> None:
        self.n_batches += 1
        if self._on_batch is not None:
            self._on_batch(n_rows)
        items = [p.item for p in batch]
        try:
            results = await loop.run_in_executor(self._executor, self._call, items)
        except Exception as exc:  # noqa: BLE001 - handed to the callers, who answer with it
            if self._isolate and len(batch) > 1:
                for p in batch:
                    await self._run_alone(loop, p)
                return
            for p in batch:
                _set(p.future, exc=exc)
            return
        for p, result in zip(batch, results):
            _set(p.future, result=result)

    async def _run_alone(self, loop: asyncio.AbstractEventLoop, p: _Pending[T, R]) -> None:
        try:
            [result] = await loop.run_in_executor(self._executor, self._call, [p.item])
        except Exception as exc:  # noqa: BLE001
            _set(p.future, exc=exc)
        else:
            _set(p.future, result=result)

    def _call(self, items: list[T]) -> list[R]:
        results = self.fn(items)
        if len(results) != len(items):
            raise RuntimeError(f"batch function returned {len(results)} results for {len(items)}")
        return results


def _set(future: asyncio.Future[R], result: R | None = None, exc: Exception | None = None) -> None:
    if future.done():  # the caller went away (client disconnected)
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)  # type: ignore[arg-type]
