"""The command line: ``mqtt-collector run|check|route|health|demo``. It alone configures logging."""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from mqtt_collector import __version__
from mqtt_collector._config.load import load_config
from mqtt_collector._config.trust import trust_warnings
from mqtt_collector._daemon.daemon import Daemon
from mqtt_collector._daemon.health import check_health
from mqtt_collector._daemon.mapper import Mapper
from mqtt_collector._daemon.routes_report import check_report
from mqtt_collector._daemon.wiring import build_routes
from mqtt_collector._exceptions import ConfigError, IncompatibleClientError, LifecycleError
from mqtt_collector._logging import configure_logging, flush_sampled

if TYPE_CHECKING:
    from mqtt_collector._config.load import Config

__all__ = ["main"]

EXIT_OK, EXIT_FATAL, EXIT_CONFIG = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mqtt-collector",
        description="Feed MQTT messages, routed by topic, into Python collectors.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, text in (
        ("run", "run the daemon until SIGTERM/SIGINT, then drain and stop"),
        ("check", "validate the config, import every collector, print the routes"),
        ("route", "print where one MQTT topic would go"),
        ("health", "exit 0 while the daemon running this config is up and connected, else 1"),
    ):
        command = commands.add_parser(name, help=text, description=text)
        command.add_argument("--config", "-c", required=True, metavar="FILE", help="YAML file")
        if name == "route":
            command.add_argument("topic", metavar="TOPIC", help="an MQTT topic name")
    text = "run the daemon on an embedded broker, fed by simulated sensors, and sum it up"
    demo = commands.add_parser("demo", help=text, description=text)
    demo.add_argument(
        "--broker",
        metavar="HOST:PORT",
        help="use this broker instead of the embedded one (needs the demo extra all the same)",
    )
    demo.add_argument(
        "--protocol", choices=("5", "3.1.1"), help="MQTT version (default: 5, or 3.1.1 embedded)"
    )
    demo.add_argument("--duration", default="10", metavar="S", help="seconds to run (default 10)")
    demo.add_argument(
        "--out",
        default="demo-output",
        metavar="DIR",
        help="where the config, database and JSON Lines file go, replacing an earlier run's"
        " (default ./demo-output)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = _parser().parse_args(argv)
    if args.command == "demo":
        return _demo(args)
    if args.command == "health":
        return _health(args.config)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "check":
        return _check(config)
    if args.command == "route":
        return _route(config, args.topic)
    return _run(config)


def _collectors_for(config: Config, topics: Sequence[str]) -> list[str]:
    wanted = set(topics)
    return [c.key for c in config.collectors if wanted.intersection(c.topics)]


def _check(config: Config) -> int:
    # Warnings are part of the report (the same ones `run` logs at start-up); exit 0 anyway.
    print(check_report(config))
    return EXIT_OK


def _route(config: Config, topic: str) -> int:
    mapper = Mapper(build_routes(config), default_priority=config.queue.default_priority)
    matches = mapper.matches(topic)
    if not matches:
        print(f"{topic}: no subscription matches")
        return EXIT_OK
    # The first matching subscription decides decoding, captures and priority; the Payload
    # topics are the union over all of them, and each collector gets the message once.
    (route, captures), others = matches[0], matches[1:]
    topics = list(mapper.payload_topics(topic))
    priority = config.queue.default_priority if route.priority is None else route.priority
    print(
        f"{topic}: subscription {route.filter} (decode {route.decode}, priority {priority})"
        f" captures {list(captures)} -> topics {topics}"
        f" -> collectors {_collectors_for(config, topics)}"
    )
    if others:
        print(f"  also matches {', '.join(other.filter for other, _ in others)}")
    return EXIT_OK


def _run(config: Config) -> int:
    # A SIGTERM or SIGINT before the event loop takes the signals over is kept, not fatal:
    # the daemon then stops as soon as it runs, and exits 0 like any other stop.
    early: list[int] = []
    previous = {
        signum: signal.signal(signum, lambda signum, _frame: early.append(signum))
        for signum in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        return _run_daemon(config, early)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _run_daemon(config: Config, early: list[int]) -> int:
    configure_logging(level=config.logging.level, fmt=config.logging.format)
    log = structlog.get_logger("mqtt_collector.cli")
    for warning in (*config.warnings, *trust_warnings(config)):
        log.warning("config", warning=warning)
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(_serve(Daemon(config), early))
    except LifecycleError as exc:
        log.error("cannot start", error=str(exc))
        return EXIT_FATAL
    except IncompatibleClientError as exc:  # no retry helps: say what to install
        log.error("fatal", error=str(exc))
        return EXIT_FATAL
    except OSError as exc:  # e.g. the metrics port is taken
        log.error("fatal", error=str(exc))
        return EXIT_FATAL
    except Exception:  # a bug: say so with the traceback, exit 1 for systemd to restart
        log.exception("fatal error")
        return EXIT_FATAL
    return EXIT_OK


def _health(path: str) -> int:
    # Exit 0 or 1 only, a bad config included: Docker's HEALTHCHECK reserves 2.
    try:
        healthy, why = check_health(load_config(path))
    except ConfigError as exc:
        print(f"unhealthy: {exc}")
        return EXIT_FATAL
    print(f"{'healthy' if healthy else 'unhealthy'}: {why}")
    return EXIT_OK if healthy else EXIT_FATAL


def _demo(args: argparse.Namespace) -> int:
    # Imported here: `run` and `check` never load the demo's modules.
    from mqtt_collector._demo.options import (  # noqa: PLC0415
        DemoOptions,
        parse_broker,
        parse_duration,
    )
    from mqtt_collector._demo.run import run_demo  # noqa: PLC0415

    try:
        options = DemoOptions(
            broker=None if args.broker is None else parse_broker(args.broker),
            protocol=args.protocol,
            duration=parse_duration(args.duration),
            out=Path(args.out),
        )
    except ValueError as exc:
        print(f"mqtt-collector demo: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return run_demo(options, configure_logging=configure_logging)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """Return uvloop's loop factory when the ``uvloop`` extra is installed, else None.

    ``MQTT_COLLECTOR_UVLOOP=0`` keeps asyncio's own loop although uvloop is installed (to compare
    the two, as ``benchmarks/e2e_bench.py`` does, or to rule uvloop out when chasing a problem).
    """
    if os.environ.get("MQTT_COLLECTOR_UVLOOP", "").strip() == "0":
        return None
    try:
        import uvloop  # type: ignore[import-not-found,unused-ignore]  # noqa: PLC0415 - optional
    except ImportError:
        return None
    return uvloop.new_event_loop  # type: ignore[no-any-return,unused-ignore]


async def _serve(daemon: Daemon, early: Sequence[int] = ()) -> None:
    """Run ``daemon`` with the signals handled; ``early``: stop signals that came before."""
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, daemon.stop)
    loop.add_signal_handler(signal.SIGHUP, daemon.reload)  # re-read the config in place
    if early:
        daemon.stop()
    # What start-up made (modules, the config, pydantic's validators: most of the heap) lives
    # as long as the process: out of the collector's sight, a full collection takes a fraction
    # of a millisecond instead of some 20 ms, a pause every message behind it would wait out.
    gc.freeze()
    try:
        await daemon.run()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(signum)
        flush_sampled()  # the summaries of what was sampled away, without waiting for the timer
