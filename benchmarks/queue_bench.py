"""Throughput of the collector queue against a bare asyncio.Queue floor, in one run.

Run: ``python benchmarks/queue_bench.py [--consumers N] [--scale F]``. Every case uses the
same number of consumer (worker) tasks, and the ratios printed are against the floor
measured in the same run, since absolute figures vary from machine to machine.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import platform
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from mqtt_collector import (
    Collector,
    CollectorQueue,
    Context,
    Delivery,
    Ok,
    Payload,
    Result,
)

_OK = Ok(None)


async def noop(payload: Any, ctx: Any) -> Result:  # noqa: ARG001
    """The processor every case calls: does nothing, returns Ok."""
    return _OK


async def floor(n: int, workers: int) -> float:
    """Bare asyncio.Queue: N worker tasks each awaiting the same no-op coroutine."""
    queue: asyncio.Queue[Any] = asyncio.Queue()
    ctx = Context()

    async def worker() -> None:
        while True:
            item = await queue.get()
            await noop(item, ctx)
            queue.task_done()

    tasks = [asyncio.create_task(worker()) for _ in range(workers)]
    await asyncio.sleep(0)
    start = time.perf_counter()
    for i in range(n):
        await queue.put(i)
    await queue.join()
    elapsed = time.perf_counter() - start
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return n / elapsed


async def _run(
    collectors: list[Collector],
    n: int,
    workers: int,
    *,
    topics: list[tuple[str, ...]] | None = None,
    wait_each: bool = False,
) -> float:
    """Send n payloads (TOPIC over ``topics`` round robin, else BROADCAST) and time them."""
    queue = CollectorQueue(collectors, min_consumers=workers, max_consumers=workers)
    async with queue:
        send = queue.get_publisher().send
        await asyncio.sleep(0)
        start = time.perf_counter()
        if wait_each:
            for i in range(n):
                await (await send(Payload(i))).wait()
        elif topics is None:
            for i in range(n):
                await send(Payload(i))
        else:
            spread, by_topic = len(topics), Delivery.TOPIC
            for i in range(n):
                await send(Payload(i, delivery=by_topic, topics=topics[i % spread]))
        # Shutting down returns once every queued payload has been processed.
        await queue.shut_down_queue()
        elapsed = time.perf_counter() - start
    return n / elapsed


async def fire_and_forget(n: int, workers: int) -> float:
    """Payloads to 1 no-op collector (BROADCAST), timed until the last is processed."""
    return await _run([Collector("one", noop)], n, workers)


async def round_trips(n: int, workers: int) -> float:
    """Sequential send + wait, one at a time."""
    return await _run([Collector("one", noop)], n, workers, wait_each=True)


async def broadcast4(n: int, workers: int) -> float:
    """BROADCAST to 4 no-op collectors: four deliveries per event."""
    collectors = [Collector(f"c{i}", noop) for i in range(4)]
    return await _run(collectors, n, workers)


async def topic10(n: int, workers: int) -> float:
    """TOPIC routing over 10 collectors, one topic each, payloads spread over the topics."""
    collectors = [Collector(f"c{i}", noop, topics=[f"topic-{i}"]) for i in range(10)]
    return await _run(collectors, n, workers, topics=[(f"topic-{i}",) for i in range(10)])


async def main() -> None:
    """Run every case in one process, best of --repeat rounds, and print events/s and ratios."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--consumers", type=int, default=8, help="workers/consumers in every case")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the event counts")
    parser.add_argument(
        "--repeat", type=int, default=3, help="rounds; each case keeps its best (default 3)"
    )
    args = parser.parse_args()
    workers, scale = args.consumers, args.scale

    def count(base: int) -> int:
        return max(1, int(base * scale))

    # label, case, events, target ratio to the floor (None: the floor itself or no target)
    cases: list[tuple[str, Callable[[int, int], Awaitable[float]], int, float | None]] = [
        ("floor: bare asyncio.Queue, 100k", floor, count(100_000), None),
        ("fire-and-forget, 1 collector, 100k", fire_and_forget, count(100_000), 0.40),
        ("topic routing, 10 collectors, 100k", topic10, count(100_000), 0.35),
        ("broadcast to 4 collectors, 50k", broadcast4, count(50_000), 0.10),
        ("send+wait round trips, 20k", round_trips, count(20_000), None),
    ]
    best = [0.0] * len(cases)
    # Rounds interleave the cases, so a machine that speeds up or slows down during the
    # run affects them all alike; each keeps its best round.
    for _ in range(args.repeat):
        for index, (_, case, n, _) in enumerate(cases):
            gc.collect()
            best[index] = max(best[index], await case(n, workers))

    print(
        f"python {platform.python_version()} on {platform.machine()}, {workers} consumers, "
        f"best of {args.repeat} rounds"
    )
    print(f"{'case':40} {'events/s':>12} {'x floor':>8} {'target':>7}")
    base = best[0]
    for (label, _, _, target), rate in zip(cases[:-1], best[:-1], strict=True):
        ratio = rate / base
        wanted = f">={target:.2f}" if target is not None else ""
        mark = "" if target is None else ("  ok" if ratio >= target else "  BELOW")
        print(f"{label:40} {rate:12,.0f} {ratio:8.2f} {wanted:>7}{mark}")
    trips = best[-1]
    print(f"{cases[-1][0]:40} {trips:12,.0f}   ({1e6 / trips:.1f} us each)")


if __name__ == "__main__":
    if "--uvloop" in sys.argv:
        sys.argv.remove("--uvloop")
        import uvloop  # type: ignore[import-not-found,unused-ignore]

        uvloop.install()
    asyncio.run(main())
