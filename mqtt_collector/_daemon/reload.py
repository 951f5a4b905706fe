"""What a reload (SIGHUP) changes: the plan from the running Config to the new one.

A reload applies in place, on the same MQTT session, what can be: subscriptions (the new
filters subscribed, the removed ones unsubscribed, the mapper's routes replaced), collectors
(one whose entry changed, or that was added or removed, is swapped: the new instance's
lifecycle is entered before it gets anything, the old one finishes what it has, then its
lifecycle exits), ``queue.drain_timeout`` and ``logging.level``. Anything else (every
``broker`` key, ``queue.type``, ``min_consumers``, ``max_consumers``, ``maxsize``,
``default_priority``, ``logging.format``, ``metrics.listen``, and a ``max_body_bytes`` that
needs a larger Maximum Packet Size than the one announced at connect) needs a restart: the
reload is refused as a whole, logged, and the running configuration stays.

Messages of a removed filter that still arrive after the new routes are in place (the broker
sent them before it took the unsubscribe) are mapped by the old routes when no new route
matches them, until the unsubscribe is answered and what had arrived before the answer is
read: they reach the collectors the old configuration routed them to, if those are still
there. Collector code is not re-imported: a changed module needs a restart.
"""

from __future__ import annotations

import logging
import re
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mqtt_collector._daemon.mapper import Mapper, Route
from mqtt_collector._daemon.wiring import build_filters, max_packet_size

if TYPE_CHECKING:
    from collections.abc import Sequence

    from pydantic import BaseModel

    from mqtt_collector._config.load import Config

__all__ = ["FallbackMapper", "ReloadPlan", "apply_log_level", "plan_reload"]

# Keys applied in place by the daemon (it reads them from its current Config when needed).
_APPLIED = {("queue", "drain_timeout"), ("logging", "level")}
_SECTIONS = ("broker", "queue", "logging", "metrics")


@dataclass(frozen=True, slots=True, kw_only=True)
class ReloadPlan:
    """What a reload from one Config to another does, or why it cannot.

    Attributes:
        refused: the keys that changed and need a restart (the reload is refused if any).
        subscribe: the ``(filter, qos)`` pairs to subscribe to (new, or a new QoS).
        unsubscribe: the filters to unsubscribe from.
        routes_changed: the subscriptions changed: the mapper's routes are replaced.
        added: the collector keys added.
        removed: the collector keys removed.
        swapped: the collector keys whose entry changed.
        applied: the other keys applied in place (``queue.drain_timeout``, ``logging.level``).
    """

    refused: tuple[str, ...] = ()
    subscribe: tuple[tuple[str, int], ...] = ()
    unsubscribe: tuple[str, ...] = ()
    routes_changed: bool = False
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    swapped: tuple[str, ...] = ()
    applied: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        """Whether the reload changes anything."""
        return bool(
            self.refused
            or self.routes_changed
            or self.added
            or self.removed
            or self.swapped
            or self.applied
        )

    def summary(self) -> dict[str, object]:
        """The fields of the one ``reloaded`` log line: only what changed."""
        fields: dict[str, object] = {
            "subscribed": [name for name, _ in self.subscribe],
            "unsubscribed": list(self.unsubscribe),
            "routes_changed": self.routes_changed,
            "collectors_added": list(self.added),
            "collectors_removed": list(self.removed),
            "collectors_swapped": list(self.swapped),
            "applied": list(self.applied),
        }
        return {name: value for name, value in fields.items() if value}


def plan_reload(old: Config, new: Config) -> ReloadPlan:
    """Compare the running ``old`` Config with ``new`` and say what a reload does."""
    refused: list[str] = []
    applied: list[str] = []
    for section in _SECTIONS:
        for key in _changed(getattr(old, section), getattr(new, section)):
            if (section, key) in _APPLIED:
                applied.append(f"{section}.{key}")
            else:
                refused.append(f"{section}.{key}")
    old_limit, new_limit = max_packet_size(old), max_packet_size(new)
    if old_limit is not None and (new_limit is None or new_limit > old_limit):
        refused.append("subscriptions.max_body_bytes (above the packet size announced at connect)")
    old_filters, new_filters = dict(build_filters(old)), dict(build_filters(new))
    before = {c.key: c for c in old.collectors}
    after = {c.key: c for c in new.collectors}
    return ReloadPlan(
        refused=tuple(refused),
        subscribe=tuple(
            (name, qos) for name, qos in new_filters.items() if old_filters.get(name) != qos
        ),
        unsubscribe=tuple(name for name in old_filters if name not in new_filters),
        routes_changed=old.subscriptions != new.subscriptions,
        added=tuple(key for key in after if key not in before),
        removed=tuple(key for key in before if key not in after),
        swapped=tuple(
            key for key, entry in after.items() if key in before and before[key] != entry
        ),
        applied=tuple(applied),
    )


def _changed(old: BaseModel, new: BaseModel) -> list[str]:
    """The fields of two models of one section that differ, by name."""
    return [
        name
        for name in type(old).model_fields
        if getattr(old, name) != getattr(new, name)
        and not (name == "client_id" and _generated(getattr(old, name), getattr(new, name)))
    ]


def _generated(*client_ids: str) -> bool:
    """Whether every id is one the config generated (none given): the same, for a reload."""
    pattern = re.compile(rf"mqtt-collector-{re.escape(socket.gethostname())}-[0-9a-f]{{8}}")
    return all(pattern.fullmatch(client_id) for client_id in client_ids)


class FallbackMapper(Mapper):
    """The new routes; a message none of them matches is mapped by the old ones.

    The daemon uses it while removed filters are being unsubscribed: what the broker sent
    under them before it took the unsubscribe is still delivered as the old config said.
    """

    def __init__(
        self, routes: Sequence[Route], fallback: Sequence[Route], *, default_priority: int
    ) -> None:
        """Map by ``routes``, then by ``fallback`` for a topic none of them matches."""
        super().__init__(routes, default_priority=default_priority)
        self._fallback = Mapper(fallback, default_priority=default_priority)

    def matches(self, topic: str) -> list[tuple[Route, tuple[str, ...]]]:
        """Return the new routes matching ``topic``, or else the old ones."""
        return super().matches(topic) or self._fallback.matches(topic)


def apply_log_level(level: str) -> None:
    """Set the least severe level logged, as ``configure_logging`` set it at start."""
    numeric = logging.getLevelName(level.upper())
    logging.getLogger().setLevel(numeric)
    # paho logs every packet at debug through aiomqtt's "mqtt" logger: kept one notch up.
    logging.getLogger("mqtt").setLevel(max(numeric, logging.INFO))
