"""Test collectors without a broker: the real daemon over an in-memory MQTT transport.

``TestDaemon(config)`` builds a real daemon (the same mapping, collector queue, error policy,
dead letters, acks and lifecycles as ``mqtt-collector run``) whose broker is in memory::

    async with TestDaemon("config.yaml") as daemon:
        outcome = await daemon.publish("sensors/kitchen/temperature", {"celsius": 21.5})
        assert outcome.acked
        assert outcome.results.is_ok()

Entering runs the lifecycles and connects; leaving drains the queue and exits them, as a
SIGTERM would. ``publish()`` returns once the daemon has settled that message: refused, or
processed by every collector it was routed to and then acked (or left unacknowledged, for the
broker to send again, when its dead letter did not get through). Nothing is polled: the kit
follows the message through the daemon's own mapping and the CollectorEvent of its payload.

The in-memory broker (:class:`MemoryTransport`) keeps what a persistent session keeps: a QoS 1
or 2 message not acked on the connection that delivered it comes again on the next one. It
delivers every message published, at the publish QoS capped by the best QoS the daemon's
matching subscriptions asked for; a message no subscription matches is delivered too (as one
sent by a subscription a persistent session kept), so that ``unrouted`` can be tested. What the
daemon publishes (dead letters, collectors' ``ctx.publish``) is recorded in ``published``;
what it delivered, acked and still holds unacked, in ``delivered``, ``acked`` and ``session()``.

Modelled on FastStream's ``TestBroker`` and httpx's ``MockTransport``.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Self, cast

from mqtt_collector._config.load import Config, load_config
from mqtt_collector._core.result import ResultList
from mqtt_collector._daemon.daemon import Daemon
from mqtt_collector._daemon.mapper import MappingError
from mqtt_collector._exceptions import TransportError
from mqtt_collector._mqtt.ack_order import AckOrder
from mqtt_collector._mqtt.topic import TopicFilter, validate_topic_name
from mqtt_collector._mqtt.transport import Inbound

if TYPE_CHECKING:
    from types import TracebackType

    from mqtt_collector._core.collector import Context
    from mqtt_collector._core.event import CollectorEvent
    from mqtt_collector._core.payload import Payload
    from mqtt_collector._core.queue import EventPublisher
    from mqtt_collector._daemon.mapper import Mapper
    from mqtt_collector._daemon.message import Message
    from mqtt_collector._daemon.metrics import Metrics

__all__ = ["MemoryTransport", "Outcome", "Published", "TestDaemon"]

_MAX_MID = 65_535
_NOT_AUTHORIZED = 0x87  # SUBACK reason code
_NO_PROPERTIES: Mapping[str, Any] = MappingProxyType({})
# Seconds ``publish()`` waits for its message to settle unless told otherwise.
PUBLISH_TIMEOUT = 30.0
# Seconds entering waits for the start (lifecycles entered, connected).
START_TIMEOUT = 30.0
# Seconds leaving waits beyond the config's ``queue.drain_timeout``.
STOP_GRACE = 15.0


@dataclass(frozen=True, slots=True)
class Published:
    """One message the daemon published through the transport (a dead letter, a ctx.publish).

    Attributes:
        topic: the topic it was published to.
        body: the body bytes.
        qos: the QoS it was published with.
        user_properties: its MQTT 5 user properties, in order (empty on 3.1.1).
        retain: whether it was published as a retained message.
    """

    topic: str
    body: bytes
    qos: int
    user_properties: tuple[tuple[str, str], ...] = ()
    retain: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """What became of one published message, once the daemon settled it.

    Attributes:
        topic: the topic it was published to.
        qos: the QoS it was delivered with (the publish QoS, capped by the subscription's).
        acked: the daemon settled it as done, to be acknowledged (always False at QoS 0,
            which has no ack); False when it held it unacknowledged (its dead letter did not
            get through). Acks go out in arrival order: one held before it holds it back too.
        results: the collectors' results, in collector order; empty when no collector took it.
        refused: why the daemon refused it before any collector, or None: ``decode`` (the body
            is not what the subscription's ``decode`` says), ``too_large`` (over
            ``max_body_bytes``) or ``unrouted`` (no subscription matches its topic). These are
            the ``reason`` labels of ``mqtt_collector_messages_rejected_total``.
        detail: the daemon's explanation of the refusal (None when it was not refused).
        message: the Message the collectors received, or None when it was refused.
    """

    topic: str
    qos: int
    acked: bool
    results: ResultList
    refused: str | None = None
    detail: str | None = None
    message: Message | None = None


class MemoryTransport:
    """An in-memory broker session behind the daemon's ``Transport`` interface.

    ``deliver()`` hands the daemon a message; once the daemon settles it, its ack goes out in
    arrival order (the same ``AckOrder`` ledger as the real transport's) and takes it out of
    the session. An ack goes out only on the connection that delivered the message: one due
    after a disconnect is lost, and the message comes again on the next connection.

    What the test sets:
        refuse: an exception every ``publish()`` of the daemon raises (as a broker refusing a
            dead letter does), or None (the default) to accept them.
        refuse_filters: filters answered in the SUBACK with 0x87 (not authorized) instead of
            being granted, e.g. ``{"t/denied/+"}``; the daemon then reports itself not ready.

    What it records, in order:
        filters: the granted subscriptions, filter -> QoS asked (unsubscribing forgets one).
        unsubscribed: every filter the daemon unsubscribed from.
        delivered: every message handed to the daemon, redeliveries included; each Inbound
            carries the ``connection`` that delivered it.
        acked: every message whose ack went out (QoS 1/2), as delivered on that connection.
        published: what the daemon published (:class:`Published`).

    ``session()`` lists the QoS 1/2 messages the session still holds unacked.
    """

    def __init__(self) -> None:
        """Start disconnected, with an empty session."""
        self.refuse: Exception | None = None
        self.refuse_filters: set[str] = set()
        self.published: list[Published] = []
        self.filters: dict[str, int] = {}  # what the daemon subscribed to, with the QoS asked
        self.unsubscribed: list[str] = []
        self.delivered: list[Inbound] = []
        self.acked: list[Inbound] = []
        self._session: dict[int, Inbound] = {}  # mid -> unacked QoS 1/2 message, in order
        # (connection, mid) -> how the daemon settled it: True acked, False held
        self._settled: dict[tuple[int, int], bool] = {}
        self._ledger = AckOrder(self._send_ack)
        self._connected = False
        self._inbox: asyncio.Queue[Inbound | None] = asyncio.Queue()
        self._mid = 0
        self._up: asyncio.Event | None = None

    @property
    def on_ack(self) -> Callable[[], object] | None:
        """Called for each ack of a message ``messages()`` yielded (the daemon counts them)."""
        return self._ledger.on_ack

    @on_ack.setter
    def on_ack(self, hook: Callable[[], object] | None) -> None:
        self._ledger.on_ack = hook

    @property
    def connection(self) -> int:
        """The number of the current (or last) connection; 0 before the first."""
        return self._ledger.connection

    @property
    def connected(self) -> bool:
        """Whether a connection is up."""
        return self._connected

    async def connect(self) -> None:
        """Open a new connection; the session's unacked messages come again first, in order."""
        connection = self._ledger.connection + 1
        self._ledger.reset(connection)
        self._connected = True
        self._inbox = asyncio.Queue()
        for old in self._session.values():
            again = Inbound(
                old.topic, old.body, old.qos, old.retain, old.mid, old.properties, connection
            )
            self._session[again.mid] = again
            self._ledger.arrived(again.mid, again.qos)
            self._inbox.put_nowait(again)
        if self._up is not None:
            self._up.set()

    async def subscribe(self, filters: Sequence[tuple[str, int]]) -> Sequence[int] | None:
        """Grant every filter as asked, except ``refuse_filters`` (SUBACK code 0x87)."""
        self.filters.update((name, qos) for name, qos in filters if name not in self.refuse_filters)
        if not self.refuse_filters:
            return None
        return [_NOT_AUTHORIZED if name in self.refuse_filters else qos for name, qos in filters]

    async def unsubscribe(self, filters: Sequence[str]) -> None:
        """Forget ``filters``, and record them in ``unsubscribed``."""
        self.unsubscribed.extend(filters)
        for name in filters:
            self.filters.pop(name, None)

    def backlog(self) -> int:
        """Return how many messages wait to be handed to the daemon."""
        return self._inbox.qsize()

    async def messages(self) -> AsyncGenerator[Inbound, None]:
        """Hand out messages until the connection is closed."""
        inbox = self._inbox
        while True:
            inbound = await inbox.get()
            if inbound is None:
                raise TransportError("connection lost: disconnected")
            self.delivered.append(inbound)
            yield inbound

    def ack(self, message: Inbound) -> None:
        """Acknowledge ``message`` once every earlier one of its connection is (QoS 1/2)."""
        if message.qos:
            self._settled[message.connection, message.mid] = True
            self._ledger.settle(message.connection, message.mid, ack=True)

    def hold(self, message: Inbound) -> None:
        """Never acknowledge ``message`` on this connection, nor anything after it."""
        if message.qos:
            self._settled[message.connection, message.mid] = False
            self._ledger.settle(message.connection, message.mid, ack=False)

    def unacked(self) -> int:
        """Return how many QoS 1/2 messages of this connection await their ack."""
        return len(self._ledger)

    def blocked(self) -> bool:
        """Whether acks on this connection are stuck behind a held message."""
        return self._connected and self._ledger.blocked()

    def was_acked(self, message: Inbound) -> bool:
        """Whether the daemon settled ``message`` (this delivery of it) as acked, not held.

        Its ack goes out once every earlier message of its connection is settled: one held
        before it holds it back too, and the broker sends both again on the next connection.
        """
        return self._settled.get((message.connection, message.mid), False)

    def session(self) -> list[Inbound]:
        """Return the QoS 1/2 messages the session holds unacked, in order.

        The next connection delivers them again; each is given as last delivered.
        """
        return list(self._session.values())

    async def publish(
        self,
        topic: str,
        body: bytes,
        *,
        qos: int,
        retain: bool = False,
        user_properties: Sequence[tuple[str, str]] = (),
    ) -> None:
        """Record the publish, or raise ``refuse``."""
        if self.refuse is not None:
            raise self.refuse
        self.published.append(Published(topic, body, qos, tuple(user_properties), retain))

    async def disconnect(self) -> None:
        """Close the connection; what it had not acked stays in the session."""
        if self._connected:
            self._connected = False
            self._inbox.put_nowait(None)

    def deliver(
        self,
        topic: str,
        body: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        properties: Mapping[str, Any] | None = None,
    ) -> Inbound:
        """Send the daemon a message on the live connection; return it as the daemon gets it.

        Its QoS is ``qos`` capped by the best QoS the subscribed filters matching ``topic``
        asked for (``qos`` itself when none matches).

        Raises:
            ValueError: ``topic`` is not a valid topic name, or ``qos`` not 0, 1 or 2.
            TransportError: no connection is up.
        """
        validate_topic_name(topic)
        if qos not in (0, 1, 2):
            raise ValueError(f"qos must be 0, 1 or 2, not {qos!r}")
        if not self._connected:
            raise TransportError("not connected: the daemon is not running")
        granted = [
            asked
            for name, asked in self.filters.items()
            if TopicFilter(name).match(topic) is not None
        ]
        if granted:
            qos = min(qos, max(granted))
        mid = 0
        connection = self._ledger.connection
        if qos:
            self._mid = self._mid % _MAX_MID + 1
            mid = self._mid
            self._settled.pop((connection, mid), None)
        inbound = Inbound(
            topic,
            body,
            qos,
            retain,
            mid,
            _NO_PROPERTIES if not properties else MappingProxyType(dict(properties)),
            connection,
        )
        if qos:
            self._session[mid] = inbound
            self._ledger.arrived(mid, qos)
        self._inbox.put_nowait(inbound)
        return inbound

    async def wait_connected(self) -> None:
        """Wait until a connection is up."""
        if not self._connected:
            if self._up is None:
                self._up = asyncio.Event()
            await self._up.wait()

    def _send_ack(self, mid: int, qos: int) -> None:  # noqa: ARG002 - the ledger's signature
        if not self._connected:
            return  # no connection to send it on: the message stays in the session
        inbound = self._session.pop(mid, None)
        if inbound is not None:
            self.acked.append(inbound)


@dataclass(slots=True)
class _Pending:
    """A published message on its way through the daemon."""

    inbound: Inbound
    future: asyncio.Future[Outcome]
    refused: str | None = None
    detail: str | None = None
    payload: Payload[Message] | None = field(default=None)


class _ObservedMapper:
    """The daemon's Mapper, telling the kit what became of each message it maps.

    A refused message is settled (acked or not) by the daemon in the same step as the
    mapping; a routed one when its CollectorEvent resolves. Either way the kit looks at the
    outcome one loop turn later, after the daemon has sent or held its ack.
    """

    def __init__(self, mapper: Mapper, kit: TestDaemon) -> None:
        self._mapper = mapper
        self._kit = kit

    def __getattr__(self, name: str) -> Any:
        return getattr(self._mapper, name)

    def map(self, inbound: Inbound) -> Payload[Message] | None:
        pending = self._kit._pending.get(id(inbound))  # noqa: SLF001 - the kit's own state
        try:
            payload = self._mapper.map(inbound)
        except MappingError as exc:
            if pending is not None:
                pending.refused, pending.detail = exc.reason, str(exc)
                self._kit._settle_soon(pending, None)  # noqa: SLF001
            raise
        if pending is None:
            return payload  # a message sent again after a reconnect: already settled
        if payload is None:
            pending.refused, pending.detail = "unrouted", "no subscription matches the topic"
            self._kit._settle_soon(pending, None)  # noqa: SLF001
        else:
            pending.payload = payload
            self._kit._by_payload[id(payload)] = pending  # noqa: SLF001
        return payload


class TestDaemon:
    """A real daemon for ``config`` (a path or a loaded Config), with an in-memory broker.

    Use it as ``async with TestDaemon(config) as daemon:``. The config's ``broker`` section is
    not used to connect anywhere (its protocol still decides how dead letters are written), and
    a ``metrics.listen`` address is ignored: nothing listens on a socket.

    Attributes:
        config: the loaded Config.
        transport: the in-memory broker session (``transport.refuse`` makes dead letters fail).
        daemon: the real Daemon under test.
    """

    __test__ = False  # not a pytest test class, despite its name

    def __init__(
        self, config: Config | str | os.PathLike[str], *, transport: MemoryTransport | None = None
    ) -> None:
        """Load ``config`` if it is a path, and build the daemon; nothing runs until entered."""
        loaded = config if isinstance(config, Config) else load_config(config)
        # Nothing listens: a test kit must not need a free port.
        self.config = loaded.model_copy(
            update={"metrics": loaded.metrics.model_copy(update={"listen": None})}
        )
        self.transport = transport or MemoryTransport()
        self.daemon = Daemon(self.config, transport=self.transport)
        self.daemon.mapper = _ObservedMapper(self.daemon.mapper, self)  # type: ignore[assignment]
        self._pending: dict[int, _Pending] = {}  # id(inbound) -> its pending
        self._by_payload: dict[int, _Pending] = {}  # id(payload) -> its pending
        self._task: asyncio.Task[None] | None = None
        publisher = self.daemon.queue.get_publisher

        def observed() -> EventPublisher:
            return cast("EventPublisher", _ObservedPublisher(publisher(), self))

        self.daemon.queue.get_publisher = observed  # type: ignore[method-assign]

    @property
    def published(self) -> list[Published]:
        """What the daemon published (dead letters, ctx.publish), in order."""
        return self.transport.published

    @property
    def metrics(self) -> Metrics:
        """The daemon's metrics; ``metrics.registry`` is their prometheus_client registry."""
        return self.daemon.metrics

    def sample(self, name: str, **labels: str) -> float:
        """Return a metric sample's value, 0 when it has none yet.

        ``sample("mqtt_collector_messages_rejected_total", reason="decode")``.
        """
        value = self.daemon.metrics.registry.get_sample_value(name, labels)
        return 0.0 if value is None else float(value)

    def context(self, key: str) -> Context:
        """Return the Context of collector ``key`` (what its lifecycle set up is on it)."""
        for collector in self.daemon.queue.collectors:
            if collector.key == key:
                return collector.ctx
        raise KeyError(f"no collector {key!r}")

    async def __aenter__(self) -> Self:
        """Run the daemon: enter the lifecycles, connect, subscribe.

        Raises what the start raised (LifecycleError when a lifecycle failed).
        """
        if self._task is not None:
            raise RuntimeError("a TestDaemon runs once")
        self._task = asyncio.create_task(self.daemon.run(), name="test-daemon")
        up = asyncio.create_task(self.transport.wait_connected())
        try:
            async with asyncio.timeout(START_TIMEOUT):
                await asyncio.wait({self._task, up}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            up.cancel()
        if self._task.done():
            self._task.result()  # raises what ended it
            raise RuntimeError("the daemon stopped before it connected")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Stop as on SIGTERM: drain the queue, exit the lifecycles; raise what the run raised."""
        task = self._task
        if task is None:
            return
        self.daemon.stop()
        async with asyncio.timeout(self.config.queue.drain_timeout + STOP_GRACE):
            await asyncio.wait({task})
        for pending in self._pending.values():
            if not pending.future.done():
                pending.future.cancel()
        if exc is None:
            task.result()

    async def publish(
        self,
        topic: str,
        body: bytes | str | object,
        *,
        qos: int = 1,
        retain: bool = False,
        properties: Mapping[str, Any] | None = None,
        timeout: float | None = PUBLISH_TIMEOUT,
    ) -> Outcome:
        """Publish a message to the daemon and return what became of it, once it is settled.

        Args:
            topic: the topic name.
            body: ``bytes`` as they are, a ``str`` as UTF-8, anything else as JSON
                (``json.dumps``, so a dict, list, number, bool or None).
            qos: the publish QoS (capped by the matching subscription's, as a broker does).
            retain: the retain flag the daemon sees.
            properties: MQTT 5 properties by name, as the daemon's transport gives them, e.g.
                ``{"user_properties": [("site", "north")], "content_type": "text/plain"}``.
            timeout: seconds to wait for it to settle (None: no bound).

        Raises:
            ValueError: a topic name that is not valid, or properties on MQTT 3.1.1.
            TimeoutError: not settled in time (a collector still running, say).
        """
        task = self._task
        if task is None or task.done():
            raise RuntimeError("the TestDaemon is not running: use `async with TestDaemon(...)`")
        if properties and self.config.broker.protocol.value != "5":
            raise ValueError("MQTT 3.1.1 messages have no properties")
        inbound = self.transport.deliver(
            topic, _encode(body), qos=qos, retain=retain, properties=properties
        )
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._pending[id(inbound)] = _Pending(inbound, future)
        try:
            async with asyncio.timeout(timeout):
                waits: set[asyncio.Future[Any]] = {future, task}
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        except TimeoutError:
            raise TimeoutError(
                f"the message on {topic!r} was not settled within {timeout}s"
            ) from None
        finally:
            self._pending.pop(id(inbound), None)
        if not future.done():
            task.result()  # the daemon failed: raise why
            raise RuntimeError(f"the daemon stopped before the message on {topic!r} settled")
        return future.result()

    def _settle_soon(self, pending: _Pending, event: CollectorEvent | None) -> None:
        """Settle ``pending`` one loop turn from now, once the daemon has acked it or not."""
        asyncio.get_running_loop().call_soon(self._settle, pending, event)

    def _settle(self, pending: _Pending, event: CollectorEvent | None) -> None:
        if pending.payload is not None:
            self._by_payload.pop(id(pending.payload), None)
        if pending.future.done():
            return
        results = None if event is None else event.get_result()
        inbound = pending.inbound
        pending.future.set_result(
            Outcome(
                topic=inbound.topic,
                qos=inbound.qos,
                acked=self.transport.was_acked(inbound),
                results=ResultList() if results is None else results,
                refused=pending.refused,
                detail=pending.detail,
                message=None if pending.payload is None else pending.payload.value,
            )
        )


class _ObservedPublisher:
    """The queue's EventPublisher, following the events of the kit's messages."""

    def __init__(self, publisher: Any, kit: TestDaemon) -> None:
        self._publisher = publisher
        self._kit = kit

    async def send(self, payload: Payload[Any]) -> CollectorEvent:
        event: CollectorEvent = await self._publisher.send(payload)
        pending = self._kit._by_payload.get(id(payload))  # noqa: SLF001 - the kit's own state
        if pending is not None:
            kit = self._kit
            # Called before the daemon's own callback (added when send() returns), so the
            # outcome is read a loop turn later, after the daemon has acked or held it.
            event.add_done_callback(lambda done: kit._settle_soon(pending, done))  # noqa: SLF001
        return event


def _encode(body: object) -> bytes:
    if isinstance(body, bytes):
        return body
    if isinstance(body, bytearray | memoryview):
        return bytes(body)
    if isinstance(body, str):
        return body.encode()
    return json.dumps(body).encode()
