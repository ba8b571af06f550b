"""Micro-batching: concurrent requests share one forward pass.

Requests wait in an asyncio queue; one worker takes the first, adds whatever else is already
queued (up to `max_batch`, optionally waiting `max_wait_ms` for more), and runs the model once in
a single inference thread, so the event loop keeps accepting requests meanwhile. Under no load a
request runs alone at once (no added latency); under load, requests that arrive during a forward
pass form the next batch. Requests already accepted but still being parsed (`arriving`) are
waited for, up to `arrival_wait_ms`, so a batch does not leave just before they join it.

    batcher = MicroBatcher(lambda texts: predictor.predict(texts, 5), max_batch=32)
    result = await batcher.submit("my card is lost")
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any


class MicroBatcher:
    """Gathers submitted items into batches for `fn(list) -> list` (same length, same order)."""

    def __init__(
        self,
        fn: Callable[[list[Any]], list[Any]],
        max_batch: int = 32,
        max_wait_ms: float = 0.0,
        on_batch: Callable[[int], None] | None = None,
        executor: ThreadPoolExecutor | None = None,
        arriving: Callable[[], int] | None = None,
        arrival_wait_ms: float = 2.0,
    ):
        self.fn = fn
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000
        self.on_batch = on_batch
        self.executor = executor or ThreadPoolExecutor(1, thread_name_prefix="tunewise-infer")
        self.arriving = arriving or (lambda: 0)
        self.arrival_wait = arrival_wait_ms / 1000
        self._queue: asyncio.Queue | None = None
        self._worker: asyncio.Task | None = None

    async def submit(self, item: Any) -> Any:
        """The model's output for `item`, computed in a batch with its concurrent neighbours."""
        if self._worker is None or self._worker.done():
            self._queue = asyncio.Queue()
            self._worker = asyncio.get_running_loop().create_task(self._run())
        assert self._queue is not None
        future = asyncio.get_running_loop().create_future()
        await self._queue.put((item, future))
        return await future

    async def _gather(self, queue: asyncio.Queue) -> list[tuple[Any, asyncio.Future]]:
        batch = [await queue.get()]
        loop = asyncio.get_running_loop()
        batch_start = loop.time()
        deadline = loop.time() + self.max_wait
        while len(batch) < self.max_batch:
            if not queue.empty():
                batch.append(queue.get_nowait())
                continue
            wait = self.arrival_wait if self.arriving() > 0 else 0.0  # requests on their way
            left = max(deadline, batch_start + wait) - loop.time()
            if left <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(queue.get(), left))
            except TimeoutError:
                break
        return batch

    async def _run(self) -> None:
        queue = self._queue
        assert queue is not None
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._gather(queue)
            live = [(item, fut) for item, fut in batch if not fut.cancelled()]
            if not live:
                continue
            if self.on_batch:
                self.on_batch(len(live))
            try:
                results = await loop.run_in_executor(
                    self.executor, self.fn, [item for item, _ in live]
                )
            except Exception as exc:
                if len(live) == 1:
                    _settle(live[0][1], exc=exc)
                    continue
                # one bad item must not fail the others: each alone, its own answer or error
                for item, fut in live:
                    try:
                        [result] = await loop.run_in_executor(self.executor, self.fn, [item])
                    except Exception as one:
                        _settle(fut, exc=one)
                    else:
                        _settle(fut, result)
                continue
            for (_, fut), result in zip(live, results, strict=True):
                _settle(fut, result)

    async def run(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` on the inference thread, outside any batch (text generation)."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn)


def _settle(fut: asyncio.Future, result: Any = None, exc: Exception | None = None) -> None:
    if fut.done():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)
