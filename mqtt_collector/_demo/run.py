"""``mqtt-collector demo``: start a broker (or use the one given), the daemon, the sensors.

The daemon is the one ``run`` starts (:class:`~mqtt_collector._daemon.daemon.Daemon` over the
aiomqtt transport, built from a YAML file the demo writes); only the broker and the sensors are
simulated. Ctrl-C or SIGTERM at any moment stops the sensors, lets the daemon drain and ack
what it received, disconnects it, stops the embedded broker and prints the summary so far.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aiomqtt

from mqtt_collector._config.load import load_config
from mqtt_collector._daemon.daemon import Daemon
from mqtt_collector._demo.broker import HOST, DemoUnavailableError, embedded_broker, require_extra
from mqtt_collector._demo.config import DemoFiles, write_config
from mqtt_collector._demo.options import DemoOptions
from mqtt_collector._demo.publisher import Published, simulate
from mqtt_collector._demo.stats import CollectorLine, Stats
from mqtt_collector._demo.timing import percentile, time_processors
from mqtt_collector._exceptions import ConfigError, LifecycleError

if TYPE_CHECKING:
    from collections.abc import Callable

    from rich.console import Console

    from mqtt_collector._demo.view import View

__all__ = ["run_demo"]

EXIT_OK, EXIT_FATAL = 0, 1
_READY_WITHIN = 15.0  # seconds the daemon may take to connect and subscribe
_SETTLE_WITHIN = 3.0  # seconds to wait for what the sensors sent to reach the daemon
_POLL = 0.02  # the daemon's counters have no events to await: they are looked at this often


@dataclass(slots=True)
class _Run:
    """What one run did, for the summary."""

    files: DemoFiles
    published: Published
    stats: Stats | None = None
    seconds: float = 0.0
    failure: str | None = None


def run_demo(options: DemoOptions, *, configure_logging: Callable[..., None]) -> int:
    """Run the demo; print its summary; return the exit status (0, or 1 if it failed)."""
    try:
        require_extra()
    except DemoUnavailableError as exc:
        print(f"mqtt-collector demo: {exc}", file=sys.stderr)  # noqa: T201 - before any console
        return EXIT_FATAL
    from rich.console import Console  # noqa: PLC0415 - optional: the demo extra

    from mqtt_collector._demo.view import LiveView, PlainView, print_summary  # noqa: PLC0415

    console = Console(highlight=False)
    files = DemoFiles.in_directory(options.out)
    files.start_afresh()
    run = _Run(files=files, published=Published())
    view_cm = LiveView(console) if console.is_terminal else contextlib.nullcontext(PlainView())
    with view_cm as view:
        # Inside the live view, stderr is rich's proxy: log lines scroll above the progress line.
        configure_logging(level="info", fmt="console", stream=sys.stderr)
        # A Ctrl-C before the demo's own handler is in place ends the run like a later one.
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_demo(options, run, console, view))
    if run.stats is not None:
        lines = run.stats.collectors()
        print_summary(
            console,
            lines=lines,
            total=_total(lines, run.stats),
            published=run.published,
            received=run.stats.received(),
            processed=run.stats.processed(),
            refused=run.stats.refused(),
            seconds=run.seconds,
            files=files,
        )
    if run.failure is not None:
        console.print(f"\n[bold red]mqtt-collector demo failed:[/] {run.failure}")
        return EXIT_FATAL
    return EXIT_OK


def _total(lines: list[CollectorLine], stats: Stats) -> CollectorLine:
    every = stats.all_seconds()
    return CollectorLine(
        key="total",
        messages=sum(line.messages for line in lines),
        ok=sum(line.ok for line in lines),
        errors=sum(line.errors for line in lines),
        p50=percentile(every, 0.50),
        p99=percentile(every, 0.99),
    )


async def _demo(options: DemoOptions, run: _Run, console: Console, view: View) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with contextlib.AsyncExitStack() as stack:
            if options.broker is None:
                host, port = HOST, await stack.enter_async_context(embedded_broker())
                protocol = options.protocol or "3.1.1"
                which = f"an embedded amqtt broker on {host}:{port} (MQTT {protocol})"
            else:
                (host, port), protocol = options.broker, options.protocol or "5"
                which = f"the broker at {host}:{port} (MQTT {protocol}, from --broker)"
            console.print(
                f"mqtt-collector demo: the daemon on {which}, for {options.duration:g} s"
                f" (Ctrl-C stops it sooner); files in {run.files.directory}",
                soft_wrap=True,
            )
            write_config(
                run.files, host=host, port=port, protocol=protocol, embedded=options.broker is None
            )
            await _with_daemon(options, run, view, stop, (host, port, protocol))
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


async def _with_daemon(
    options: DemoOptions,
    run: _Run,
    view: View,
    stop: asyncio.Event,
    broker: tuple[str, int, str],
) -> None:
    try:
        config = load_config(run.files.config)
    except ConfigError as exc:
        run.failure = str(exc)
        return
    daemon = Daemon(config)
    run.stats = stats = Stats(daemon.metrics, time_processors(daemon.queue.collectors))
    running = asyncio.create_task(daemon.run(), name="daemon")
    try:
        await _feed(options, run, view, stop, daemon, running, broker)
    finally:
        daemon.stop()
        try:
            await running
        except (LifecycleError, OSError) as exc:
            run.failure = str(exc)
        view.show(stats.progress())


async def _feed(  # noqa: PLR0917 - one caller, the parts of one run
    options: DemoOptions,
    run: _Run,
    view: View,
    stop: asyncio.Event,
    daemon: Daemon,
    running: asyncio.Task[None],
    broker: tuple[str, int, str],
) -> None:
    """Start the sensors once the daemon is subscribed; stop them after the duration."""
    host, port, protocol = broker
    if not await _until(lambda: daemon.ready or running.done() or stop.is_set(), _READY_WITHIN):
        run.failure = f"the daemon did not connect and subscribe to {host}:{port} in time"
    if run.failure is not None or running.done() or stop.is_set():
        return
    assert run.stats is not None
    stats, published = run.stats, run.published
    sensors_stop = asyncio.Event()
    sensors = asyncio.create_task(
        simulate(
            host=host,
            port=port,
            protocol=aiomqtt.ProtocolVersion.V311
            if protocol == "3.1.1"
            else aiomqtt.ProtocolVersion.V5,
            username="demo" if options.broker is None else None,
            stop=sensors_stop,
            published=published,
        ),
        name="sensors",
    )
    progress = asyncio.create_task(_show(view, stats), name="progress")
    stopped = asyncio.create_task(stop.wait())
    started = time.monotonic()
    try:
        await asyncio.wait(
            {sensors, running, stopped}, timeout=options.duration, return_when="FIRST_COMPLETED"
        )
        sensors_stop.set()
        try:
            async with asyncio.timeout(_SETTLE_WITHIN):
                await sensors
        except TimeoutError:
            run.failure = "the simulated sensors did not stop in time"
        except aiomqtt.MqttError as exc:
            run.failure = f"the simulated sensors lost the broker: {exc}"
        run.seconds = time.monotonic() - started
        # What the broker accepted is on its way to the daemon: let it arrive and be processed.
        await _until(lambda: _settled(stats, published), _SETTLE_WITHIN)
    finally:
        for task in (sensors, progress, stopped):
            task.cancel()
        await asyncio.gather(sensors, progress, stopped, return_exceptions=True)


def _settled(stats: Stats, published: Published) -> bool:
    received = stats.received()
    return (
        received >= published.total
        and stats.processed() + sum(stats.refused().values()) >= received
    )


async def _until(condition: Callable[[], bool], within: float) -> bool:
    """Wait until ``condition()`` holds, at most ``within`` seconds; return whether it does."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(_POLL)
    return True


async def _show(view: View, stats: Stats) -> None:
    while True:
        view.show(stats.progress())
        await asyncio.sleep(view.interval)
