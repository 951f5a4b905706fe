"""The AckOrder ledger: acks in arrival order, per connection, never for held messages."""

from __future__ import annotations

from mqtt_collector._mqtt.ack_order import AckOrder


def _ledger(*mids: int, connection: int = 1) -> tuple[AckOrder, list[int]]:
    """A ledger on ``connection`` with ``mids`` arrived (QoS 1), and the list of mids it acks."""
    acked: list[int] = []
    ledger = AckOrder(lambda mid, qos: acked.append(mid))
    ledger.reset(connection)
    for mid in mids:
        ledger.arrived(mid, 1)
    return ledger, acked


class TestAckOrder:
    """One behaviour of the ack order per test."""

    def test_ack_order_acks_in_arrival_order_when_settled_out_of_order(self) -> None:
        """Settling 3, 1, 2 sends acks 1, 2, 3, each once every earlier one is settled."""
        ledger, acked = _ledger(1, 2, 3)
        ledger.settle(1, 3, ack=True)
        assert acked == []
        ledger.settle(1, 1, ack=True)
        assert acked == [1]
        ledger.settle(1, 2, ack=True)
        assert acked == [1, 2, 3]
        assert len(ledger) == 0

    def test_ack_order_sends_the_qos_of_each_message(self) -> None:
        """A QoS 2 message waits for its turn like QoS 1, and is acked as QoS 2."""
        sent: list[tuple[int, int]] = []
        ledger = AckOrder(lambda mid, qos: sent.append((mid, qos)))
        ledger.reset(1)
        ledger.arrived(7, 2)
        assert len(ledger) == 1
        ledger.settle(1, 7, ack=True)
        assert sent == [(7, 2)]

    def test_ack_order_held_message_blocks_later_acks(self) -> None:
        """A held message is never acked, and neither is anything after it."""
        ledger, acked = _ledger(1, 2, 3)
        ledger.settle(1, 1, ack=True)
        ledger.settle(1, 2, ack=False)
        ledger.settle(1, 3, ack=True)
        assert acked == [1]
        assert len(ledger) == 2
        assert ledger.blocked()

    def test_ack_order_blocked_only_once_the_held_message_is_first(self) -> None:
        """A held message behind a pending one does not block yet: the pending one may be acked."""
        ledger, _ = _ledger(1, 2)
        ledger.settle(1, 2, ack=False)
        assert not ledger.blocked()
        ledger.settle(1, 1, ack=True)
        assert ledger.blocked()

    def test_ack_order_settled_twice_acks_once(self) -> None:
        """Settling a message again sends no second ack (nor holds an acked one)."""
        ledger, acked = _ledger(1)
        ledger.settle(1, 1, ack=True)
        ledger.settle(1, 1, ack=True)
        ledger.settle(1, 1, ack=False)
        assert acked == [1]
        assert not ledger.blocked()

    def test_ack_order_never_acks_messages_of_an_earlier_connection(self) -> None:
        """Work from a lost connection finishing later is not acked; the broker resends it."""
        ledger, acked = _ledger(1, connection=1)
        ledger.reset(2)
        ledger.arrived(1, 1)
        ledger.settle(1, 1, ack=True)
        assert acked == []
        ledger.settle(2, 1, ack=True)
        assert acked == [1]

    def test_ack_order_new_connection_forgets_old_pending(self) -> None:
        """An old connection's unsettled message does not block the new connection's acks."""
        ledger, acked = _ledger(5, connection=1)
        ledger.reset(2)
        ledger.arrived(6, 1)
        ledger.settle(2, 6, ack=True)
        assert acked == [6]
        assert len(ledger) == 0

    def test_ack_order_counts_each_ack_of_a_settled_message(self) -> None:
        """``on_ack`` is called once per ack of a settled message, not for skipped ones."""
        ledger, acked = _ledger(1, 2)
        calls: list[None] = []
        ledger.on_ack = lambda: calls.append(None)
        ledger.skipped(3, 1)
        ledger.settle(1, 1, ack=True)
        ledger.settle(1, 2, ack=True)
        assert acked == [1, 2, 3]
        assert len(calls) == 2

    def test_ack_order_skipped_message_acked_in_its_turn(self) -> None:
        """A skipped (malformed) message waits for every message before it, then goes at once."""
        ledger, acked = _ledger(1)
        ledger.skipped(2, 1)
        ledger.arrived(3, 1)
        assert acked == []
        ledger.settle(1, 1, ack=True)
        assert acked == [1, 2]
        ledger.settle(1, 3, ack=True)
        assert acked == [1, 2, 3]

    def test_ack_order_skipped_message_with_nothing_before_it_acked_at_once(self) -> None:
        """A skipped message at the head of the line is acked as it arrives."""
        ledger, acked = _ledger()
        ledger.skipped(9, 2)
        assert acked == [9]
        assert len(ledger) == 0

    def test_ack_order_same_packet_id_again_acked_once_in_the_newer_turn(self) -> None:
        """A packet id sent again before its ack: one ack, which no longer waits for the first."""
        ledger, acked = _ledger(1, 2)
        ledger.settle(1, 1, ack=False)  # held: would block everything
        ledger.arrived(1, 1)  # the same packet id again
        ledger.settle(1, 2, ack=True)
        assert acked == [2]
        ledger.settle(1, 1, ack=True)
        assert acked == [2, 1]
        assert len(ledger) == 0
