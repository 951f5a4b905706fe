"""An in-memory broker session behind the daemon's Transport interface, for daemon tests.

It keeps what a persistent MQTT session keeps: every QoS 1 message stays in the session until
acked on the connection it was sent by, and comes again, in order, on the next connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from types import MappingProxyType

from mqtt_collector._exceptions import TransportError
from mqtt_collector._mqtt.ack_order import AckOrder
from mqtt_collector._mqtt.transport import Inbound

__all__ = ["SessionTransport"]


class SessionTransport:
    """A Transport whose broker is a list: ``send()`` puts a message in, its ack takes it out.

    Acks go out in arrival order, per connection, through the same ``AckOrder`` ledger as
    the real transport's.

    ``refuse`` makes every ``publish()`` raise it (a dead letter the broker refuses), until
    set to None. ``refuse_filters`` are answered with SUBACK code 0x87 (not authorized).
    """

    def __init__(
        self, *, refuse: Exception | None = None, refuse_filters: Sequence[str] = ()
    ) -> None:
        """Start disconnected, with an empty session."""
        self.refuse = refuse
        self.refuse_filters = set(refuse_filters)
        self.unsubscribed: list[str] = []
        self.session: list[tuple[int, str, bytes]] = []  # (mid, topic, body), unacked, in order
        self.acked: list[bytes] = []
        self.published: list[tuple[str, bytes]] = []
        self.delivered: list[tuple[int, bytes]] = []  # (connection, body) as handed out
        self._connection = 0
        self._connected = False
        self._inbox: asyncio.Queue[Inbound | None] = asyncio.Queue()
        self._mid = 0
        self._ledger = AckOrder(self._send_ack)
        self._bodies: dict[int, bytes] = {}  # mid -> body, of the messages in the ledger

    @property
    def connection(self) -> int:
        """The number of the current (or last) connection."""
        return self._connection

    @property
    def connected(self) -> bool:
        """Whether a connection is up."""
        return self._connected

    async def connect(self) -> None:
        """Open a new connection; the session's unacked messages come again first."""
        self._connection += 1
        self._connected = True
        self._ledger.reset(self._connection)
        self._bodies.clear()
        self._inbox = asyncio.Queue()
        for mid, topic, body in self.session:
            self._inbox.put_nowait(self._inbound(mid, topic, body))

    async def subscribe(self, filters: Sequence[tuple[str, int]]) -> Sequence[int] | None:
        """Grant every filter as asked, except ``refuse_filters``."""
        if not self.refuse_filters:
            return None
        return [0x87 if name in self.refuse_filters else qos for name, qos in filters]

    async def unsubscribe(self, filters: Sequence[str]) -> None:
        """Accept every filter, and record it."""
        self.unsubscribed.extend(filters)

    def backlog(self) -> int:
        """Return how many messages wait to be handed out."""
        return self._inbox.qsize()

    async def messages(self) -> AsyncIterator[Inbound]:
        """Hand out messages until the connection is closed."""
        inbox = self._inbox
        while True:
            inbound = await inbox.get()
            if inbound is None:
                raise TransportError("connection lost: disconnected")
            self.delivered.append((inbound.connection, inbound.body))
            if inbound.connection == self._ledger.connection:
                self._bodies[inbound.mid] = inbound.body
                self._ledger.arrived(inbound.mid, inbound.qos)
            yield inbound

    @property
    def on_ack(self) -> Callable[[], object] | None:
        """Called for each ack sent."""
        return self._ledger.on_ack

    @on_ack.setter
    def on_ack(self, hook: Callable[[], object] | None) -> None:
        self._ledger.on_ack = hook

    def ack(self, message: Inbound) -> None:
        """Ack ``message`` in its turn, if it came by the current connection."""
        self._ledger.settle(message.connection, message.mid, ack=True)

    def hold(self, message: Inbound) -> None:
        """Never ack ``message`` on this connection (nor anything after it)."""
        self._ledger.settle(message.connection, message.mid, ack=False)

    def unacked(self) -> int:
        """Return how many messages of this connection await their ack."""
        return len(self._ledger)

    def blocked(self) -> bool:
        """Whether acks are stuck behind a held message on the live connection."""
        return self._connected and self._ledger.blocked()

    def _send_ack(self, mid: int, qos: int) -> None:
        """The broker takes message ``mid`` out of the session (if still connected)."""
        if not self._connected:
            return
        self.session = [entry for entry in self.session if entry[0] != mid]
        self.acked.append(self._bodies.pop(mid))

    async def publish(
        self,
        topic: str,
        body: bytes,
        *,
        qos: int,
        user_properties: Sequence[tuple[str, str]] = (),
    ) -> None:
        """Record the publish, or raise ``refuse``."""
        if self.refuse is not None:
            raise self.refuse
        self.published.append((topic, body))

    async def disconnect(self) -> None:
        """Close the connection; what it had not acked stays in the session."""
        if self._connected:
            self._connected = False
            self._inbox.put_nowait(None)

    def send(self, topic: str, body: bytes) -> None:
        """The broker gets a QoS 1 message for the session (handed out if connected)."""
        self._mid += 1
        self.session.append((self._mid, topic, body))
        if self._connected:
            self._inbox.put_nowait(self._inbound(self._mid, topic, body))

    def _inbound(self, mid: int, topic: str, body: bytes) -> Inbound:
        return Inbound(topic, body, 1, False, mid, MappingProxyType({}), self._connection)
