"""What ``mqtt-collector check`` prints: the routes as a table, their dead ends as warnings.

The report has four parts, in plain text with aligned columns:

1. one row per Payload topic template: the subscription (filter as subscribed, QoS, decode),
   the template as written (``site/{1}``), and the collectors it reaches;
2. one row per collector: its topics, processor and lifecycle;
3. one ``warning: <key path>: ...`` line per collector topic no subscription produces, and
   per subscription whose messages reach no collector (the two the daemon logs at start-up);
4. one summary line, ``OK: 3 subscriptions, 4 collectors, 2 warnings``.

How a template is matched against a collector's topics (decided here, with
:meth:`TopicTemplate.could_produce`): collectors take Payload topics by exact string, and a
template reaches a collector when some MQTT topic its subscription's filter matches could render
to one of the collector's topics. A capture (``{1}``) stands for any value of its level (any
levels for a ``#`` capture), ``{topic}`` for any topic the filter matches. A capture never holds
'+' or '#' (topic names cannot), so a collector topic such as ``site/+`` is a literal string that
only a template written ``site/+`` produces: collectors do not take filters. Where the topic
reached differs from the template as written, the row names it (``zones (site/a)``), since only
the messages with that value go there. A template that reaches nothing while another of its
subscription's templates does is shown as ``(none)`` without a warning.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mqtt_collector._config.trust import trust_warnings

if TYPE_CHECKING:
    from collections.abc import Sequence

    from mqtt_collector._config.load import Config

__all__ = ["check_report"]

_NONE = "(none)"
_FILTER_HINT = "; collector topics are exact names, not filters ('+' and '#' are literal)"


def check_report(config: Config) -> str:
    """Describe a loaded configuration's routes for ``mqtt-collector check``.

    Args:
        config: a configuration :func:`load_config` accepted.

    Returns:
        The report's lines joined by newlines, ending with the summary line.
    """
    # reached[s][t]: (collector index, collector topic) pairs template t of subscription s reaches.
    reached = [
        [
            [
                (c_index, topic)
                for c_index, collector in enumerate(config.collectors)
                for topic in collector.topics
                if template.could_produce(topic, filter_=subscription.matcher)
            ]
            for template in subscription.templates
        ]
        for subscription in config.subscriptions
    ]
    lines = [f"{config.path}: MQTT subscription -> Payload topics -> collectors", ""]
    lines += _table(
        ("SUBSCRIPTION", "QOS", "DECODE", "PAYLOAD TOPIC", "COLLECTORS"),
        _route_rows(config, reached),
    )
    lines.append("")
    lines += _table(
        ("COLLECTOR", "TOPICS", "PROCESSOR", "LIFECYCLE"),
        [
            (c.key, ", ".join(c.topics), c.processor_path, c.lifecycle_path or "-")
            for c in config.collectors
        ],
    )
    warnings = _warnings(config, reached) + trust_warnings(config)
    if warnings:
        lines.append("")
        lines += [f"warning: {warning}" for warning in warnings]
    counts = (
        _count(len(config.subscriptions), "subscription"),
        _count(len(config.collectors), "collector"),
        _count(len(warnings), "warning"),
    )
    lines += ["", f"OK: {', '.join(counts)}"]
    return "\n".join(lines)


def _route_rows(
    config: Config, reached: list[list[list[tuple[int, str]]]]
) -> list[tuple[str, ...]]:
    """One row per template; the subscription's cells only on its first row."""
    rows: list[tuple[str, ...]] = []
    for subscription, per_template in zip(config.subscriptions, reached, strict=True):
        first = (subscription.mqtt_filter, str(subscription.qos), subscription.decode)
        for index, (template, pairs) in enumerate(
            zip(subscription.templates, per_template, strict=True)
        ):
            cells = []
            for c_index, collector in enumerate(config.collectors):
                topics = [topic for found, topic in pairs if found == c_index]
                if not topics:
                    continue
                named = [topic for topic in topics if topic != template.template]
                cells.append(f"{collector.key} ({', '.join(named)})" if named else collector.key)
            lead = first if index == 0 else ("", "", "")
            rows.append((*lead, template.template, ", ".join(cells) or _NONE))
    return rows


def _warnings(config: Config, reached: list[list[list[tuple[int, str]]]]) -> list[str]:
    """The collector topics nothing produces, then the subscriptions that feed nothing."""
    produced = {pair for per_template in reached for pairs in per_template for pair in pairs}
    found = [
        f"collectors[{c_index}].topics[{t_index}]: collector {collector.key!r} listens to"
        f" {topic!r}, which no subscription produces"
        f"{_FILTER_HINT if any(char in topic for char in '+#') else ''}"
        for c_index, collector in enumerate(config.collectors)
        for t_index, topic in enumerate(collector.topics)
        if (c_index, topic) not in produced
    ]
    found.extend(
        f"subscriptions[{s_index}]: messages on {subscription.mqtt_filter!r} reach no"
        " collector: no collector's topics match its Payload topics"
        f" {', '.join(repr(topic) for topic in subscription.topics)}"
        for s_index, (subscription, per_template) in enumerate(
            zip(config.subscriptions, reached, strict=True)
        )
        if not any(per_template)
    )
    return found


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Left-aligned columns two spaces apart, with no trailing blanks."""
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in (header, *rows)
    ]


def _count(number: int, noun: str) -> str:
    """``no warnings``, ``1 warning``, ``2 warnings``."""
    if number == 0:
        return f"no {noun}s"
    return f"1 {noun}" if number == 1 else f"{number} {noun}s"
