"""The envelope every value travels in, and how it is to be delivered."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Generic, TypeVar

__all__ = ["Delivery", "Payload"]

T = TypeVar("T")


class Delivery(enum.Enum):
    """How the router picks the collectors for a payload."""

    BROADCAST = "broadcast"
    """Every collector of the queue."""
    KEY = "key"
    """The collectors whose key is in ``payload.keys``."""
    TOPIC = "topic"
    """The collectors listening to a topic in ``payload.topics``."""


def _strings(name: str, values: Iterable[str] | None) -> tuple[str, ...]:
    """Return ``values`` as a tuple of str, or raise TypeError naming the payload field."""
    if values is None:
        return ()
    cls = values.__class__
    if cls is tuple:
        out: tuple[str, ...] = values  # type: ignore[assignment]
    elif cls is list:
        out = tuple(values)
    elif isinstance(values, str):
        raise TypeError(f"Payload {name} must be a list of strings, not the string {values!r}")
    else:
        out = tuple(values)
    for value in out:
        if value.__class__ is not str and not isinstance(value, str):
            raise TypeError(f"Payload {name} must be strings, got {value!r}")
    return out


class Payload(Generic[T]):
    """A value sent through the collector queue, with where it should go.

    Attributes:
        value: the value collectors receive; any type.
        delivery: BROADCAST (default), KEY or TOPIC.
        keys: collector keys, for ``Delivery.KEY`` (any iterable of str; kept as a tuple).
        topics: topics, for ``Delivery.TOPIC`` (any iterable of str; kept as a tuple).
        priority: lower runs first on a priority queue; None takes the queue's ``default_priority``.
    """

    __slots__ = ("delivery", "keys", "priority", "topics", "value")

    def __init__(
        self,
        value: T,
        *,
        delivery: Delivery = Delivery.BROADCAST,
        keys: Iterable[str] | None = None,
        topics: Iterable[str] | None = None,
        priority: int | None = None,
    ) -> None:
        """Wrap ``value``; raise ValueError/TypeError naming a bad argument."""
        if delivery.__class__ is not Delivery:
            raise ValueError(
                f"unknown delivery {delivery!r}: "
                "use Delivery.BROADCAST, Delivery.KEY or Delivery.TOPIC"
            )
        if priority is not None and (priority.__class__ is not int):
            raise TypeError(f"Payload priority must be an int or None, got {priority!r}")
        self.value = value
        self.delivery = delivery
        # Tuples: a payload may reach several collectors at once, so its routing data is
        # immutable; an empty tuple is also one shared object the garbage collector skips.
        self.keys = () if keys is None else _strings("keys", keys)
        self.topics = () if topics is None else _strings("topics", topics)
        self.priority = priority

    def __repr__(self) -> str:
        """Show the value and the delivery metadata."""
        return (
            f"Payload({self.value!r}, delivery={self.delivery}, keys={self.keys!r}, "
            f"topics={self.topics!r}, priority={self.priority!r})"
        )


_new = object.__new__


def topic_payload(value: T, topics: tuple[str, ...], priority: int | None) -> Payload[T]:
    """Return ``Payload(value, delivery=TOPIC, topics=topics, priority=priority)``, unchecked.

    For a caller that already holds a tuple of str and an int or None (the daemon's mapper,
    once per message): the same object, without the checks ``Payload()`` makes of user input.
    """
    payload: Payload[T] = _new(Payload)
    payload.value = value
    payload.delivery = Delivery.TOPIC
    payload.keys = ()
    payload.topics = topics
    payload.priority = priority
    return payload
