"""Building the daemon's parts from a loaded Config."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mqtt_collector._core.buffer import QueueType
from mqtt_collector._core.collector import Collector, Context
from mqtt_collector._daemon.mapper import Route
from mqtt_collector._daemon.policy import DeadLetter, GuardedCollector, Policy, Publish
from mqtt_collector._mqtt.aiomqtt.transport import AiomqttTransport
from mqtt_collector._mqtt.tls import TLSOptions
from mqtt_collector._mqtt.topic import covers, overlaps, split_shared

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from mqtt_collector._config.load import Config
    from mqtt_collector._mqtt.gmqtt.transport import GmqttTransport

__all__ = [
    "build_collectors",
    "build_filters",
    "build_routes",
    "build_transport",
    "collector_publish",
    "max_packet_size",
    "overlapping_filters",
    "queue_type",
]


# The most a PUBLISH may take besides its body: the fixed header (5 bytes), the longest
# topic MQTT allows (2 + 65,535), the packet identifier (2) and 64 KiB of properties.
PACKET_OVERHEAD = 5 + 2 + 65_535 + 2 + 65_536
_LARGEST_PACKET = 268_435_455 + 5  # MQTT's largest remaining length, plus its fixed header


def max_packet_size(config: Config) -> int | None:
    """Return the Maximum Packet Size to announce: None unless every subscription bounds bodies.

    The largest ``max_body_bytes`` plus ``PACKET_OVERHEAD``, so that the broker never
    sends the daemon a message it would refuse anyway (it drops it instead), and the
    memory the daemon holds stays bounded by ``receive_maximum`` times that.
    """
    limits = [sub.max_body_bytes for sub in config.subscriptions]
    if not limits or any(limit is None for limit in limits):
        return None
    largest = max(limit for limit in limits if limit is not None) + PACKET_OVERHEAD
    return largest if largest <= _LARGEST_PACKET else None


def build_transport(
    config: Config, *, on_malformed: Callable[[], object] | None = None
) -> AiomqttTransport | GmqttTransport:
    """Return the transport ``config.broker.client`` names, set up from ``config``.

    ``on_malformed()`` is called for each malformed message the transport skips. gmqtt, an
    optional extra, is imported only when the configuration names it.
    """
    broker = config.broker
    tls = None
    if broker.tls is not None:
        tls = TLSOptions(
            ca_file=None if broker.tls.ca_file is None else str(broker.tls.ca_file),
            cert_file=None if broker.tls.cert_file is None else str(broker.tls.cert_file),
            key_file=None if broker.tls.key_file is None else str(broker.tls.key_file),
            key_password=None
            if broker.tls.key_password is None
            else broker.tls.key_password.get_secret_value(),
            insecure=broker.tls.insecure,
        )
    transport: type[AiomqttTransport | GmqttTransport] = AiomqttTransport
    if broker.client == "gmqtt":
        from mqtt_collector._mqtt.gmqtt.transport import GmqttTransport  # noqa: PLC0415

        transport = GmqttTransport
    return transport(
        host=broker.host,
        port=broker.port,
        client_id=broker.client_id,
        protocol=broker.protocol.value,
        username=broker.username,
        password=None if broker.password is None else broker.password.get_secret_value(),
        tls=tls,
        keepalive=broker.keepalive,
        persistent=broker.session.persistent,
        session_expiry=broker.session.expiry,
        receive_maximum=broker.receive_maximum,
        on_malformed=on_malformed,
        max_packet_size=max_packet_size(config),
    )


def build_routes(config: Config) -> list[Route]:
    """Return the mapper's routes, one per subscription, in config order."""
    return [
        Route(
            filter=sub.filter,
            matcher=sub.matcher,
            templates=sub.templates,
            decode=sub.decode,
            decoder=sub.decoder,
            priority=sub.priority,
            max_body_bytes=sub.max_body_bytes,
        )
        for sub in config.subscriptions
    ]


def build_collectors(
    config: Config,
    *,
    publish: Publish | None,
    on_outcome: Callable[[str, str], None] | None,
) -> list[Collector]:
    """Return a collector per ``collectors:`` entry, run by its error policy.

    Each Context gets ``key`` and ``options`` before the lifecycle runs, and ``publish``
    (see :func:`collector_publish`) when the daemon gives one.
    """
    collectors: list[Collector] = []
    for entry in config.collectors:
        dead_letter = None
        if entry.dead_letter is not None:
            dead_letter = DeadLetter(topic=entry.dead_letter.topic, qos=entry.dead_letter.qos)
        policy = Policy(
            timeout=entry.timeout,
            attempts=entry.retry.attempts,
            backoff=entry.retry.backoff,
            max_backoff=entry.retry.max_backoff,
            dead_letter=dead_letter,
        )
        ctx = Context(key=entry.key, options=entry.checked_options)
        if publish is not None:
            ctx.publish = collector_publish(publish)
        collectors.append(
            GuardedCollector(
                entry.key,
                entry.processor,
                policy,
                publish=publish,
                on_outcome=on_outcome,
                lifecycle=entry.lifecycle,
                topics=entry.topics,
                ctx=ctx,
            )
        )
    return collectors


def collector_publish(publish: Publish) -> Publish:
    """Return ``ctx.publish``: a collector's way to publish through the daemon's connection.

    ``await ctx.publish(topic, body, *, qos=1, retain=False, user_properties=())`` publishes
    ``body`` (bytes) to ``topic`` on the daemon's publishing connection (the one dead letters
    take), as a retained message if ``retain``, and returns once the broker has acknowledged
    it at QoS 1. It raises what the transport raises (TransportError; PublishRefusedError
    when an MQTT 5 PUBACK refuses it), so a processor that lets it propagate returns an
    Error, handled by the collector's error policy (retry, dead letter) like any other: with
    QoS 1 the message in hand is not acknowledged before what it led to is published. QoS 2
    is refused, as everywhere in the daemon. On MQTT 3.1.1, which has no properties, a
    publish with ``user_properties`` goes as the JSON envelope dead letters use.
    """

    async def publish_message(
        topic: str,
        body: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        user_properties: Iterable[tuple[str, str]] = (),
    ) -> None:
        if not isinstance(body, bytes | bytearray):
            raise TypeError(f"ctx.publish: body must be bytes, got {type(body).__name__}")
        if qos not in (0, 1):
            raise ValueError(f"ctx.publish: qos must be 0 or 1, got {qos!r}")
        properties = [(name, value) for name, value in user_properties]
        await publish(topic, bytes(body), qos=qos, retain=bool(retain), user_properties=properties)

    return publish_message


def queue_type(name: str) -> QueueType:
    """Return the QueueType for ``queue.type``."""
    return QueueType(name)


def build_filters(config: Config) -> list[tuple[str, int]]:
    """Return the ``(filter, qos)`` pairs to subscribe to: none covered by another.

    A broker sends a message once per matching subscription of a client (Mosquitto does),
    and the mapper already routes every copy by every matching subscription: so a filter
    another one covers (``a/+`` under ``a/#``, or the same filter twice) is not subscribed
    to, and the covering filter takes the highest QoS of those it stands for.
    """
    wanted: dict[str, int] = {}
    for sub in config.subscriptions:
        wanted[sub.mqtt_filter] = max(sub.qos, wanted.get(sub.mqtt_filter, 0))
    names = list(wanted)
    kept: dict[str, int] = {}
    for index, name in enumerate(names):
        # Of two filters that cover each other (``#`` and ``+/#``), the first one stays.
        if any(
            other != name
            and covers(other, name)
            and (not covers(name, other) or names.index(other) < index)
            for other in names
        ):
            continue
        kept[name] = max(qos for other, qos in wanted.items() if covers(name, other))
    return list(kept.items())


def overlapping_filters(filters: list[tuple[str, int]]) -> list[tuple[str, str]]:
    """Return the pairs of ``filters`` some topic matches both of (it may arrive twice).

    The broker delivers a message once per matching subscription: a ``$share`` one too,
    to one member of its group (maybe this daemon), whatever the other subscription is. So
    the filters under the ``$share/<group>/`` prefixes are compared, whatever the groups.
    """
    names = [name for name, _ in filters]
    return [
        (first, second)
        for index, first in enumerate(names)
        for second in names[index + 1 :]
        if overlaps(split_shared(first)[1], split_shared(second)[1])
    ]
