"""The Acker: acks in arrival order, per connection, never for QoS 0 or abandoned work."""

from __future__ import annotations

from collections.abc import Sequence
from types import MappingProxyType

from mqtt_collector._daemon.acker import Acker, Ticket
from mqtt_collector._mqtt.transport import Inbound


class FakeTransport:
    """Records the mids it is asked to ack."""

    def __init__(self) -> None:
        """Start with no acks."""
        self.acked: list[int] = []

    def ack(self, message: Inbound) -> None:
        """Record the ack of ``message``."""
        self.acked.append(message.mid)


def _inbound(mid: int, *, qos: int = 1, connection: int = 1) -> Inbound:
    return Inbound(f"t/{mid}", b"", qos, False, mid, MappingProxyType({}), connection)


def _acker() -> tuple[Acker, FakeTransport]:
    transport = FakeTransport()
    return Acker(transport, on_ack=None), transport  # type: ignore[arg-type]


def _track(acker: Acker, mid: int, *, connection: int = 1) -> Ticket:
    ticket = acker.track(_inbound(mid, connection=connection))
    assert ticket is not None
    return ticket


def _track_all(acker: Acker, mids: Sequence[int], *, connection: int = 1) -> list[Ticket]:
    return [_track(acker, mid, connection=connection) for mid in mids]


class TestAcker:
    """One behaviour of the ack order per test."""

    def test_acker_acks_in_arrival_order_when_done_out_of_order(self) -> None:
        """Finishing 3, 1, 2 sends acks 1, 2, 3, each once every earlier one is done."""
        acker, transport = _acker()
        t1, t2, t3 = _track_all(acker, [1, 2, 3])
        acker.done(t3)
        assert transport.acked == []
        acker.done(t1)
        assert transport.acked == [1]
        acker.done(t2)
        assert transport.acked == [1, 2, 3]
        assert len(acker) == 0

    def test_acker_does_not_track_qos0(self) -> None:
        """A QoS 0 message gets no ticket and does not hold later acks back."""
        acker, transport = _acker()
        assert acker.track(_inbound(1, qos=0)) is None
        ticket = acker.track(_inbound(2))
        assert ticket is not None
        acker.done(ticket)
        assert transport.acked == [2]

    def test_acker_tracks_qos2(self) -> None:
        """A QoS 2 message waits for its turn like QoS 1."""
        acker, transport = _acker()
        ticket = acker.track(_inbound(7, qos=2))
        assert ticket is not None
        assert len(acker) == 1
        acker.done(ticket)
        assert transport.acked == [7]

    def test_acker_held_ticket_blocks_later_acks(self) -> None:
        """An abandoned message is never acked, and neither is anything after it."""
        acker, transport = _acker()
        t1, t2, t3 = _track_all(acker, [1, 2, 3])
        acker.done(t1)
        acker.done(t2, ack=False)
        acker.done(t3)
        assert transport.acked == [1]
        assert len(acker) == 2

    def test_acker_done_twice_acks_once(self) -> None:
        """Marking a ticket done again sends no second ack."""
        acker, transport = _acker()
        ticket = acker.track(_inbound(1))
        assert ticket is not None
        acker.done(ticket)
        acker.done(ticket)
        assert transport.acked == [1]

    def test_acker_never_acks_tickets_of_an_earlier_connection(self) -> None:
        """Work from a lost connection finishing later is not acked; the broker resends it."""
        acker, transport = _acker()
        old = _track(acker, 1, connection=1)
        new = _track(acker, 1, connection=2)
        acker.done(old)
        assert transport.acked == []
        acker.done(new)
        assert transport.acked == [1]

    def test_acker_new_connection_forgets_old_pending(self) -> None:
        """An old connection's unfinished ticket does not block the new connection's acks."""
        acker, transport = _acker()
        _track(acker, 5, connection=1)
        fresh = _track(acker, 6, connection=2)
        acker.done(fresh)
        assert transport.acked == [6]
        assert len(acker) == 0

    def test_acker_counts_each_ack(self) -> None:
        """``on_ack`` is called once per ack sent."""
        transport = FakeTransport()
        calls: list[None] = []
        acker = Acker(transport, on_ack=lambda: calls.append(None))  # type: ignore[arg-type]
        for ticket in _track_all(acker, [1, 2]):
            acker.done(ticket)
        assert len(calls) == 2
