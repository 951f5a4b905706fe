"""What the demo prints: its progress while it runs, and the summary at the end.

On a terminal the progress is a live line (rich) with the log lines scrolling above it;
elsewhere it is a log line every couple of seconds.
"""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING, Protocol, Self

import structlog
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from types import TracebackType

    from mqtt_collector._demo.config import DemoFiles
    from mqtt_collector._demo.publisher import Published
    from mqtt_collector._demo.stats import CollectorLine, Progress

__all__ = ["LiveView", "PlainView", "View", "print_summary"]

logger = structlog.get_logger("mqtt_collector.demo")


class View(Protocol):
    """Shows the progress while the demo runs."""

    interval: float  # seconds between two updates

    def show(self, progress: Progress) -> None:
        """Show ``progress``."""


class LiveView:
    """A progress line kept at the bottom of the terminal; log lines scroll above it."""

    interval = 0.25

    def __init__(self, console: Console) -> None:
        """Draw on ``console`` (a terminal) from ``__enter__`` to ``__exit__``."""
        # Redrawn by show() from the event loop, not from rich's refresh thread.
        self._live = Live(Text("starting…"), console=console, auto_refresh=False, transient=False)

    def __enter__(self) -> Self:
        """Start drawing; stderr (the log lines) now goes through the console, above the line."""
        self._live.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Leave the last progress line on the screen."""
        self._live.__exit__(exc_type, exc, traceback)

    def show(self, progress: Progress) -> None:
        """Redraw the line."""
        self._live.update(Text(progress.line(), style="bold"), refresh=True)


class PlainView:
    """A log line every couple of seconds, for a log file or a pipe."""

    interval = 2.0

    def show(self, progress: Progress) -> None:
        """Log the progress as one line."""
        logger.info(
            "progress",
            received=progress.received,
            processed=progress.processed,
            refused=progress.refused,
            errors=progress.errors,
            rate=f"{progress.rate:.0f} msg/s",
        )


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f} ms"


def _table(lines: list[CollectorLine], total: CollectorLine) -> Table:
    table = Table(title="Collectors", title_justify="left")
    table.add_column("collector")
    for name in ("messages", "ok", "errors", "p50", "p99"):
        table.add_column(name, justify="right")
    for line in [*lines, total]:
        table.add_row(
            line.key,
            f"{line.messages:,}",
            f"{line.ok:,}",
            f"{line.errors:,}",
            _ms(line.p50),
            _ms(line.p99),
            end_section=line is lines[-1] if lines else False,
            style="bold" if line is total else None,
        )
    return table


def print_summary(
    console: Console,
    *,
    lines: list[CollectorLine],
    total: CollectorLine,
    published: Published,
    received: int,
    processed: int,
    refused: dict[str, int],
    seconds: float,
    files: DemoFiles,
) -> None:
    """Print the summary: the collectors' table, the message counts, the files and commands."""
    console.print()
    console.print(_table(lines, total))
    why = ", ".join(f"{reason}: {count:,}" for reason, count in sorted(refused.items()))
    console.print(
        f"Published {published.total:,} messages in {seconds:.1f} s ({published.readings:,}"
        f" readings, {published.malformed:,} malformed, {published.status:,} status);"
        f" the daemon received {received:,}, processed {processed:,}, refused"
        f" {sum(refused.values()):,}" + (f" ({why})." if why else "."),
        soft_wrap=True,
    )
    database, jsonl = shlex.quote(str(files.database)), shlex.quote(str(files.jsonl))
    table = files.table  # a fixed identifier, not user input
    query = f"SELECT topic, data FROM {table} ORDER BY id DESC LIMIT 5"  # noqa: S608
    console.print(f"\nFiles in {files.directory}:")
    console.print(f"  {files.config.name:<15} the config the daemon ran with")
    console.print(f"  {files.database.name:<15} SQLite, table {files.table}")
    console.print(f"  {files.jsonl.name:<15} JSON Lines, one message a line")
    console.print("\nLook at them:")
    console.print(f"  sqlite3 {database} {shlex.quote(query)}", soft_wrap=True)
    console.print(
        f"  sqlite3 {database} 'SELECT count(*) FROM {table}'",  # noqa: S608
        soft_wrap=True,
    )
    console.print(f"  tail -n 3 {jsonl}", soft_wrap=True)
    config = shlex.quote(str(files.config))
    console.print(f"  mqtt-collector check --config {config}", soft_wrap=True)
