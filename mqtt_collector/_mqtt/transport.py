"""The MQTT client interface the daemon uses, so a client library can be swapped behind it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from mqtt_collector._exceptions import TransportError

__all__ = ["ConnectError", "ConnectionInfo", "Inbound", "Transport", "suback_reason"]

# MQTT 5 SUBACK reason codes of failure (§3.9.3); 3.1.1 has 0x80 alone.
_SUBACK_FAILURES = {
    0x80: "Unspecified error",
    0x83: "Implementation specific error",
    0x87: "Not authorized",
    0x8F: "Topic Filter invalid",
    0x91: "Packet Identifier in use",
    0x97: "Quota exceeded",
    0x9E: "Shared Subscriptions not supported",
    0xA1: "Subscription Identifiers not supported",
    0xA2: "Wildcard Subscriptions not supported",
}
_MAX_QOS = 2


def suback_reason(code: int) -> str:
    """Return how a SUBACK code reads: ``granted QoS 1``, ``0x87 Not authorized``, ..."""
    if 0 <= code <= _MAX_QOS:
        return f"granted QoS {code}"
    return f"0x{code:02X} {_SUBACK_FAILURES.get(code, 'Unknown reason')}"


class ConnectError(TransportError):
    """``connect()`` failed; says whether the broker refused the protocol or never answered."""

    def __init__(
        self, message: str, *, unsupported_protocol: bool = False, timed_out: bool = False
    ) -> None:
        """Build the error; the flags let the daemon say what to do about it."""
        super().__init__(message)
        self.unsupported_protocol = unsupported_protocol
        self.timed_out = timed_out


@dataclass(slots=True)
class ConnectionInfo:
    """What the broker said about one connection, filled in by the transport as it learns it.

    Attributes:
        session_present: the CONNACK said the broker kept our session (and its subscriptions).
        disconnect_reason: the reason code of the DISCONNECT the broker sent (MQTT 5), or
            None while it has sent none (a broker that just closes the socket sends none).
    """

    session_present: bool = False
    disconnect_reason: int | None = None


@dataclass(slots=True)  # not frozen: a frozen __init__ costs a call per field, per message
class Inbound:
    """One message as the transport received it, before any decoding.

    Attributes:
        topic: the topic it was published to.
        body: the body bytes.
        qos: 0, 1 or 2.
        retain: the retain flag.
        mid: the packet identifier (meaningful for QoS 1 and 2).
        properties: MQTT 5 properties by name; empty on 3.1.1.
        connection: which connection (1, 2, ...) it arrived on; acks only go out on it.
    """

    topic: str
    body: bytes
    qos: int
    retain: bool
    mid: int
    properties: Mapping[str, Any]
    connection: int


class Transport(Protocol):
    """What the daemon needs of an MQTT client: connect, subscribe, read, ack, publish, disconnect.

    Errors of the connection are raised as ``TransportError``.
    """

    @property
    def connection(self) -> int:
        """The number of the current connection (0 before the first)."""
        ...

    @property
    def connected(self) -> bool:
        """Whether a connection is up."""
        ...

    async def connect(self) -> ConnectionInfo | None:
        """Connect, or raise TransportError (ConnectError when it can say more).

        Returns what the broker said about the connection (None: nothing known), updated by
        the transport while the connection lasts.
        """
        ...

    async def subscribe(self, filters: Sequence[tuple[str, int]]) -> Sequence[int] | None:
        """Subscribe to each ``(filter, qos)`` in one request; wait for the answer, unbounded.

        Returns the broker's code for each filter, in order: the QoS granted, or a failure
        reason code (0x80 and up). None means every filter was granted as asked. Raises
        TransportError if the request cannot be sent. The caller bounds the wait, and
        cancels it when the connection is lost.
        """
        ...

    async def unsubscribe(self, filters: Sequence[str]) -> None:
        """Unsubscribe from ``filters``, waiting for the broker's answer."""
        ...

    def backlog(self) -> int:
        """Return how many received messages ``messages()`` has not yet yielded."""
        ...

    def messages(self) -> AsyncIterator[Inbound]:
        """Yield messages as they arrive; raise TransportError when the connection is lost."""
        ...

    on_ack: Callable[[], object] | None
    """Called for each ack of a message ``messages()`` yielded (the daemon counts them)."""

    def ack(self, message: Inbound) -> None:
        """Settle a QoS 1/2 message as processed: acked once every earlier one is.

        Acks go out in arrival order and only on the connection the message came by (an
        ``AckOrder`` keeps that ledger); a message of an earlier connection is left alone,
        and a QoS 0 message has no ack.
        """
        ...

    def hold(self, message: Inbound) -> None:
        """Settle a QoS 1/2 message as never to be acked on this connection.

        Nothing after it is acked either (acks go in order): only a new connection, on
        which the broker sends them all again, gets them through.
        """
        ...

    def unacked(self) -> int:
        """Return how many QoS 1/2 messages of this connection await their ack."""
        ...

    def blocked(self) -> bool:
        """Whether the connection is up and its acks are stuck behind a held message."""
        ...

    async def publish(
        self,
        topic: str,
        body: bytes,
        *,
        qos: int,
        retain: bool = False,
        user_properties: Sequence[tuple[str, str]] = (),
    ) -> None:
        """Publish a message (the broker keeps it if ``retain``), waiting for its ack at QoS 1/2.

        ``user_properties`` travel as MQTT 5 user properties; on 3.1.1, which has none, the
        message goes as the JSON envelope of ``mqtt_collector._mqtt.envelope``.

        Raises TransportError if it cannot be sent or acknowledged, PublishRefusedError
        (a TransportError) if the broker's ack says it refused it (MQTT 5 reason code).
        """
        ...

    async def disconnect(self) -> None:
        """Disconnect cleanly if connected; never raises."""
        ...
