"""Acknowledging QoS 1/2 messages in the order they arrived, once they are processed."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mqtt_collector._mqtt.transport import Inbound, Transport

__all__ = ["Acker", "Ticket"]

_HELD = 2  # Ticket.state of a message never to be acked


class Ticket:
    """One message's place in the ack order."""

    __slots__ = ("connection", "message", "state")

    def __init__(self, message: Inbound) -> None:
        """Hold ``message`` until it may be acked."""
        self.message = message
        self.connection = message.connection
        self.state = 0  # 0 pending, 1 done: ack it, 2 held: never ack it (abandoned)


class Acker:
    """Sends acks strictly in arrival order, and only on the connection a message came by.

    A message is acked once it and every message before it on the same connection are
    done. A held message (abandoned at shutdown, or one whose dead letter failed) is never
    acked, and neither is anything after it (acks go in order), so the broker sends them all
    again on the next connection. A new connection forgets what the old one had pending:
    the broker redelivers those itself.
    """

    def __init__(self, transport: Transport, *, on_ack: Callable[[], object] | None = None) -> None:
        """Ack through ``transport``; call ``on_ack()`` for each ack sent."""
        self._transport = transport
        self._on_ack = on_ack
        self._pending: deque[Ticket] = deque()
        self._connection = 0

    def __len__(self) -> int:
        """Return how many messages await their ack."""
        return len(self._pending)

    def blocked(self) -> int:
        """Return the connection whose acks are stuck behind a held message (0: none are).

        Once the oldest pending message is held, nothing more can be acked on that
        connection: only a new connection, on which the broker sends them all again, helps.
        """
        pending = self._pending
        return self._connection if pending and pending[0].state == _HELD else 0

    def track(self, message: Inbound) -> Ticket | None:
        """Put ``message`` in line; None for QoS 0, which has no ack."""
        if message.qos == 0:
            return None
        if message.connection != self._connection:
            self._pending.clear()
            self._connection = message.connection
        ticket = Ticket(message)
        self._pending.append(ticket)
        return ticket

    def done(self, ticket: Ticket, *, ack: bool = True) -> None:
        """Mark ``ticket`` processed (``ack``) or abandoned, and send every ack now due."""
        if ticket.connection != self._connection or ticket.state:
            return
        ticket.state = 1 if ack else 2
        pending = self._pending
        send = self._transport.ack
        while pending and pending[0].state == 1:
            send(pending.popleft().message)
            if self._on_ack is not None:
                self._on_ack()
