"""The mapper (MQTT message to Payload) and the choice of filters to subscribe to; no broker."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from mqtt_collector._config.load import load_config
from mqtt_collector._core.payload import Delivery, Payload, topic_payload
from mqtt_collector._daemon.mapper import _CACHED_TOPICS, Mapper, MappingError, Route
from mqtt_collector._daemon.message import Message, new_message
from mqtt_collector._daemon.wiring import build_filters, overlapping_filters
from mqtt_collector._mqtt.template import TopicTemplate
from mqtt_collector._mqtt.topic import TopicFilter, covers
from mqtt_collector._mqtt.transport import Inbound
from tests.helpers.daemon import recorder_entry, write_config


def _route(
    filter_: str,
    *,
    topics: tuple[str, ...] = ("{topic}",),
    decode: str = "json",
    priority: int | None = None,
    max_body_bytes: int | None = None,
) -> Route:
    matcher = TopicFilter(filter_)
    return Route(
        filter=filter_,
        matcher=matcher,
        templates=tuple(TopicTemplate(t, wildcards=matcher.wildcards) for t in topics),
        decode=decode,
        priority=priority,
        max_body_bytes=max_body_bytes,
    )


def _inbound(topic: str, body: bytes = b"{}", **keys: Any) -> Inbound:
    return Inbound(
        topic,
        body,
        keys.get("qos", 1),
        keys.get("retain", False),
        keys.get("mid", 1),
        keys.get("properties", MappingProxyType({})),
        keys.get("connection", 1),
    )


def _mapper(*routes: Route, default_priority: int = 1000) -> Mapper:
    return Mapper(routes, default_priority=default_priority)


class TestMapper:
    """Mapper.map and Mapper.matches."""

    def test_mapper_builds_a_topic_payload_with_the_message(self) -> None:
        """One route: a TOPIC payload whose Message has topic, data, raw, qos, retain, captures."""
        mapper = _mapper(_route("s/+/t", topics=("temp", "site/{1}")))
        payload = mapper.map(_inbound("s/kitchen/t", b'{"v": 1}', qos=2, retain=True))
        assert payload is not None
        assert payload.delivery is Delivery.TOPIC
        assert payload.topics == ("temp", "site/kitchen")
        message = payload.value
        assert (message.topic, message.data, message.raw) == ("s/kitchen/t", {"v": 1}, b'{"v": 1}')
        assert (message.qos, message.retain, message.captures) == (2, True, ("kitchen",))
        assert message.subscription == "s/+/t"

    def test_mapper_returns_none_when_nothing_matches(self) -> None:
        """A topic no route matches gives None."""
        assert _mapper(_route("a/+")).map(_inbound("b/x")) is None

    def test_mapper_first_matching_route_decides(self) -> None:
        """Decoding, captures, priority and subscription come from the first matching route."""
        mapper = _mapper(
            _route("a/#", topics=("x",), decode="text", priority=5),
            _route("a/+", topics=("y",), decode="json", priority=1),
        )
        payload = mapper.map(_inbound("a/b", b"not json"))
        assert payload is not None
        assert payload.value.data == "not json"
        assert payload.value.captures == ("b",)
        assert payload.priority == 5
        assert payload.value.subscription == "a/#"

    def test_mapper_unions_topics_without_duplicates(self) -> None:
        """Every matching route's topics, each once, in config order."""
        mapper = _mapper(
            _route("a/+", topics=("x", "dev/{1}")),
            _route("a/#", topics=("dev/{1}", "y", "x")),
            _route("b/#", topics=("z",)),
        )
        payload = mapper.map(_inbound("a/b"))
        assert payload is not None
        assert payload.topics == ("x", "dev/b", "y")
        assert mapper.payload_topics("a/b") == ("x", "dev/b", "y")

    def test_mapper_unions_topics_when_first_route_has_one_template(self) -> None:
        """A first matching route with a single template still gets the later routes' topics."""
        mapper = _mapper(
            _route("a/#", topics=("x",)),
            _route("a/+", topics=("site/{1}",)),
        )
        payload = mapper.map(_inbound("a/b"))
        assert payload is not None
        assert payload.topics == ("x", "site/b")

    def test_mapper_uses_default_priority(self) -> None:
        """A route without priority takes the default priority."""
        payload = _mapper(_route("a"), default_priority=42).map(_inbound("a"))
        assert payload is not None
        assert payload.priority == 42

    def test_mapper_passes_properties(self) -> None:
        """The inbound MQTT 5 properties become message.properties."""
        properties = MappingProxyType({"user_properties": [("k", "v")]})
        payload = _mapper(_route("a")).map(_inbound("a", properties=properties))
        assert payload is not None
        assert payload.value.properties == {"user_properties": [("k", "v")]}

    def test_mapper_refuses_a_body_over_max_body_bytes(self) -> None:
        """A body larger than max_body_bytes raises MappingError with reason too_large."""
        mapper = _mapper(_route("a", max_body_bytes=4))
        assert mapper.map(_inbound("a", b"1234")) is not None
        with pytest.raises(MappingError, match="5 bytes exceeds max_body_bytes \\(4\\)") as caught:
            mapper.map(_inbound("a", b"12345"))
        assert caught.value.reason == "too_large"

    @pytest.mark.parametrize(
        ("decode", "body", "message"),
        [
            ("json", b"{nope", "invalid JSON"),
            ("json", b"", "empty body is not JSON"),
            ("json", b"\xff\xfe", "invalid JSON"),
            ("text", b"caf\xe9", "invalid UTF-8"),
        ],
        ids=["bad-json", "empty-json", "binary-json", "bad-utf8"],
    )
    def test_mapper_refuses_undecodable_body(self, decode: str, body: bytes, message: str) -> None:
        """A body the subscription cannot decode raises MappingError with reason decode."""
        with pytest.raises(MappingError, match=message) as caught:
            _mapper(_route("a", decode=decode)).map(_inbound("a", body))
        assert caught.value.reason == "decode"

    @pytest.mark.parametrize(
        "body",
        [
            '{"v": "caf\u00e9 \u2603"}'.encode(),
            '{"v": "caf\u00e9 \u2603"}'.encode("utf-8-sig"),
            '{"v": "caf\u00e9 \u2603"}'.encode("utf-16-le"),
            '{"v": "caf\u00e9 \u2603"}'.encode("utf-16"),
            '{"v": "caf\u00e9 \u2603"}'.encode("utf-32-be"),
            b'"\xed\xa0\x80"',  # a lone surrogate: json.loads takes it (surrogatepass)
            b"7",
            b" [1, 2]",
        ],
        ids=["utf-8", "utf-8-bom", "utf-16-le", "utf-16-bom", "utf-32-be", "surrogate", "1", "ws"],
    )
    def test_mapper_decodes_json_as_json_loads_does(self, body: bytes) -> None:
        """Every encoding json.loads reads from bytes decodes to what it gives."""
        payload = _mapper(_route("a")).map(_inbound("a", body))
        assert payload is not None
        assert payload.value.data == json.loads(body)

    def test_mapper_routing_is_remembered_per_topic_and_bounded(self) -> None:
        """A topic's routing is worked out once; the memory of it never passes its bound."""
        mapper = _mapper(_route("s/+/t", topics=("site/{1}",)))
        calls: list[str] = []
        matches = mapper.matches

        def counting(topic: str) -> list[tuple[Route, tuple[str, ...]]]:
            calls.append(topic)
            return matches(topic)

        mapper.matches = counting  # type: ignore[method-assign]
        for _ in range(3):
            payload = mapper.map(_inbound("s/kitchen/t"))
            assert payload is not None
            assert payload.topics == ("site/kitchen",)
            assert payload.value.captures == ("kitchen",)
            assert mapper.map(_inbound("other")) is None
        assert calls == ["s/kitchen/t", "other"]
        for number in range(3 * _CACHED_TOPICS):
            payload = mapper.map(_inbound(f"s/{number}/t"))
            assert payload is not None
            assert payload.topics == (f"site/{number}",)
            assert len(mapper._routing) <= _CACHED_TOPICS

    def test_mapper_passes_bytes_through_raw(self) -> None:
        """decode: bytes gives the body itself as data, whatever it holds (even empty)."""
        mapper = _mapper(_route("a", decode="bytes"))
        for body in (b"\x00\xff", b""):
            payload = mapper.map(_inbound("a", body))
            assert payload is not None
            assert payload.value.data == body

    def test_mapper_decodes_empty_text(self) -> None:
        """decode: text accepts an empty body as ''."""
        payload = _mapper(_route("a", decode="text")).map(_inbound("a", b""))
        assert payload is not None
        assert payload.value.data == ""

    def test_mapper_matches_lists_every_route_with_captures(self) -> None:
        """matches() gives each matching route and its captures, in config order."""
        first, second = _route("a/+/c"), _route("a/#")
        found = _mapper(first, second, _route("b")).matches("a/b/c")
        assert found == [(first, ("b",)), (second, ("b/c",))]


class TestFilters:
    """Which filters the daemon subscribes to, so that no message arrives twice."""

    @pytest.mark.parametrize(
        ("outer", "inner", "expected"),
        [
            ("a/#", "a/+", True),
            ("a/#", "a", True),
            ("a/#", "a/b/c", True),
            ("a/+", "a/#", False),
            ("a/+/c", "a/b/c", True),
            ("a/b/c", "a/+/c", False),
            ("#", "$SYS/x", False),
            ("#", "+/x", True),
            ("a/+", "a/+/b", False),
            ("$share/g/a/#", "$share/g/a/b", True),
            ("$share/g/a/#", "a/b", False),
            ("$share/g/a/#", "$share/h/a/b", False),
        ],
    )
    def test_covers(self, outer: str, inner: str, *, expected: bool) -> None:
        """covers() says whether every topic of one filter matches the other."""
        assert covers(outer, inner) is expected

    def _filters(self, tmp_path: Path, *subscriptions: dict[str, Any]) -> list[tuple[str, int]]:
        path = write_config(
            tmp_path,
            port=1883,
            prefix="p",
            subscriptions=list(subscriptions),
            collectors=[recorder_entry("rec", ["all"])],
        )
        return build_filters(load_config(path, environ={}))

    def test_filters_drop_a_covered_filter_and_keep_the_highest_qos(self, tmp_path: Path) -> None:
        """A filter another covers is not subscribed; the covering one takes the higher QoS."""
        got = self._filters(
            tmp_path,
            {"filter": "a/#", "qos": 0, "topics": ["all"]},
            {"filter": "a/+/t", "qos": 1, "topics": ["all"]},
            {"filter": "b/+", "qos": 0, "topics": ["all"]},
        )
        assert got == [("a/#", 1), ("b/+", 0)]

    def test_filters_subscribe_a_repeated_filter_once(self, tmp_path: Path) -> None:
        """The same filter twice is one subscription."""
        got = self._filters(
            tmp_path,
            {"filter": "a/+", "qos": 1, "topics": ["all"]},
            {"filter": "a/+", "qos": 0, "topics": ["all"]},
        )
        assert got == [("a/+", 1)]

    def test_filters_keep_the_broader_wherever_it_is(self, tmp_path: Path) -> None:
        """A later filter that covers an earlier one replaces it, with the higher QoS."""
        got = self._filters(
            tmp_path,
            {"filter": "+/#", "qos": 1, "topics": ["all"]},
            {"filter": "#", "qos": 0, "topics": ["all"]},
        )
        assert got == [("#", 1)]

    def test_filters_keep_shared_and_plain_apart(self, tmp_path: Path) -> None:
        """A share group's filter never covers a plain one, nor the reverse."""
        got = self._filters(
            tmp_path,
            {"filter": "a/#", "share_group": "g", "topics": ["all"]},
            {"filter": "a/b", "topics": ["all"]},
        )
        assert got == [("$share/g/a/#", 1), ("a/b", 1)]

    def test_overlapping_filters_are_reported(self) -> None:
        """Filters that share some topics without covering each other are found."""
        found = overlapping_filters([("a/+/c", 1), ("a/b/+", 1), ("x/#", 1), ("$SYS/x", 1)])
        assert found == [("a/+/c", "a/b/+")]


def test_new_message_is_the_dataclass_message() -> None:
    """The mapper's fast constructor makes what Message(...) makes: equal, hashable, frozen."""
    fields: dict[str, Any] = {
        "topic": "a/b",
        "data": {"v": 1},
        "raw": b'{"v": 1}',
        "qos": 1,
        "retain": True,
        "captures": ("b",),
        "subscription": "a/+",
        "received_at": 12.5,
        "properties": MappingProxyType({"content_type": "json"}),
    }
    fast = new_message(*fields.values())
    slow = Message(**fields)
    assert fast == slow
    assert repr(fast) == repr(slow)
    assert [getattr(fast, name) for name in fields] == list(fields.values())
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.topic = "c"  # type: ignore[misc]
    assert dataclasses.fields(Message)[-1].name == "properties"
    assert [field.name for field in dataclasses.fields(Message)] == list(fields)


def test_topic_payload_is_the_checked_payload() -> None:
    """The mapper's unchecked Payload is what Payload(...) makes of the same arguments."""
    fast = topic_payload("v", ("a", "b"), 5)
    slow = Payload("v", delivery=Delivery.TOPIC, topics=("a", "b"), priority=5)
    assert repr(fast) == repr(slow)
    assert [getattr(fast, name) for name in Payload.__slots__] == [
        getattr(slow, name) for name in Payload.__slots__
    ]
