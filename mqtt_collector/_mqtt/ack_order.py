"""The ledger of unacked QoS 1/2 messages of one connection, acked in the order they arrived.

MQTT wants the acknowledgements of a connection's QoS 1/2 PUBLISHes sent in the order the
PUBLISHes came (MQTT 5 §4.6), and only on that connection: so the MQTT layer owns this, and
every transport keeps one ``AckOrder`` (it knows nothing of any client library: the
transport hands it a ``send(mid, qos)``). A message joins the ledger when it arrives (a
malformed one the transport skipped joins already settled, to be acked in its turn); the
daemon settles it later, acked or held; acks go out once every message before it is settled.
A held message is never acked, and neither is anything after it: only a new connection,
on which the broker sends them all again, gets them through. A new connection forgets the
old ledger (the broker redelivers what it held), and a settle for a message of an earlier
connection does nothing.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

__all__ = ["AckOrder"]

_PENDING, _HELD, _ACK, _DROP = 0, 1, 2, 3  # _ACK and up: done; _DROP sends nothing


class _Entry:
    """One message's place in line."""

    __slots__ = ("counted", "mid", "qos", "state")

    def __init__(self, mid: int, qos: int, state: int, *, counted: bool) -> None:
        self.mid = mid
        self.qos = qos
        self.state = state
        self.counted = counted  # its ack is reported through on_ack (not a skipped one)


class AckOrder:
    """The unacked messages of the current connection, in arrival order.

    ``send(mid, qos)`` sends one acknowledgement; ``on_ack()`` (if set) is called for each
    ack of a message the daemon settled (not for the malformed ones the transport skipped).
    """

    __slots__ = ("_by_mid", "_line", "_send", "connection", "on_ack")

    def __init__(self, send: Callable[[int, int], object]) -> None:
        """Send acks through ``send(mid, qos)``; start with connection 0 and nothing in line."""
        self._send = send
        self._line: deque[_Entry] = deque()
        self._by_mid: dict[int, _Entry] = {}
        self.connection = 0
        self.on_ack: Callable[[], object] | None = None

    def __len__(self) -> int:
        """Return how many messages of this connection await their ack."""
        return len(self._line)

    def reset(self, connection: int) -> None:
        """Start ``connection``: forget every message of the previous one."""
        self._line.clear()
        self._by_mid.clear()
        self.connection = connection

    def arrived(self, mid: int, qos: int) -> None:
        """Put a QoS 1/2 message in line, to be settled by ``ack``/``hold``."""
        entry = _Entry(mid, qos, _PENDING, counted=True)
        by_mid = self._by_mid
        earlier = by_mid.get(mid)
        if earlier is not None:
            # Sent again under the same packet id before we acked it (only on a new
            # connection, says MQTT): one ack answers both, so it goes out with the newer
            # one, in its turn, and the earlier one no longer holds the line.
            earlier.state = _DROP
        by_mid[mid] = entry
        self._line.append(entry)
        if earlier is not None:
            self._flush()

    def skipped(self, mid: int, qos: int) -> None:
        """Put a message the transport could not read in line, already settled: acked in turn.

        Acking it lets the ones behind it flow; closing the connection instead would not
        help, as the broker would send it again first.
        """
        self._line.append(_Entry(mid, qos, _ACK, counted=False))
        self._flush()

    def settle(self, connection: int, mid: int, *, ack: bool) -> None:
        """Settle message ``mid`` of ``connection``: ack it in its turn, or (not ``ack``) hold it.

        A message of an earlier connection, or one already settled, is left alone.
        """
        if connection != self.connection:
            return
        entry = self._by_mid.get(mid)
        if entry is None or entry.state != _PENDING:
            return
        if not ack:
            entry.state = _HELD
            return
        entry.state = _ACK
        if self._line[0] is entry:
            self._flush()

    def blocked(self) -> bool:
        """Whether the oldest message in line is held: nothing more can be acked on it."""
        line = self._line
        return bool(line) and line[0].state == _HELD

    def _flush(self) -> None:
        """Send every ack now due: those of the settled messages at the head of the line."""
        line, send, by_mid = self._line, self._send, self._by_mid
        while line and line[0].state >= _ACK:
            entry = line.popleft()
            if entry.state == _DROP:
                continue
            mid = entry.mid
            if by_mid.get(mid) is entry:
                del by_mid[mid]
            send(mid, entry.qos)
            if entry.counted and self.on_ack is not None:
                self.on_ack()
