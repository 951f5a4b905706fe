"""Tests for the ``subscriptions:`` and ``collectors:`` sections of the configuration."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from mqtt_collector._mqtt.topic import TopicFilter
from tests import sample_collectors
from tests.helpers.config import base, collector, error, load, subscription

if TYPE_CHECKING:
    from pathlib import Path


def subscribe(**keys: Any) -> dict[str, Any]:
    """A configuration with one subscription made of ``keys``."""
    return base(subscriptions=[subscription(**keys)])


def collect(**keys: Any) -> dict[str, Any]:
    """A configuration with one collector made of ``keys``."""
    return base(collectors=[collector(**keys)])


def _routes(subscription: str, collector: str) -> str:
    """YAML text with one subscription and one collector written as flow-mapping entries."""
    return (
        f"subscriptions: [{{{subscription}}}]\n"
        f"collectors: [{{processor: 'tests.sample_collectors:store', {collector}}}]\n"
    )


class TestSubscription:
    """subscriptions[i]."""

    def test_subscription_defaults(self, tmp_path: Path) -> None:
        """Defaults: qos 1, json, ["{topic}"], no priority, group or body bound."""
        sub = load(tmp_path, base()).subscriptions[0]
        assert (sub.qos, sub.decode, sub.topics) == (1, "json", ("{topic}",))
        assert (sub.priority, sub.share_group, sub.max_body_bytes) == (None, None, None)

    def test_subscription_qos_out_of_range(self, tmp_path: Path) -> None:
        """A qos of 3 lists the allowed values."""
        assert error(tmp_path, subscribe(qos=3)) == "subscriptions[0].qos: must be 0 or 1, got 3"

    @pytest.mark.parametrize("qos", [2, "2", "${QOS:-2}"], ids=["number", "string", "env"])
    def test_subscription_qos_2_refused(self, tmp_path: Path, qos: object) -> None:
        """QoS 2 is refused, saying why and to use 1, however it is written."""
        assert error(tmp_path, subscribe(qos=qos)) == (
            "subscriptions[0].qos: QoS 2 is not supported: acknowledgement after processing"
            " cannot be completed across a reconnect, so a message could be lost; use 1"
        )

    @pytest.mark.parametrize("qos", [0, 1])
    def test_subscription_qos_accepted(self, tmp_path: Path, qos: int) -> None:
        """QoS 0 and 1 are subscription levels."""
        assert load(tmp_path, subscribe(qos=qos)).subscriptions[0].qos == qos

    def test_subscription_qos_from_environment(self, tmp_path: Path) -> None:
        """A substituted qos string is a number."""
        assert load(tmp_path, subscribe(qos="${QOS:-0}")).subscriptions[0].qos == 0

    @pytest.mark.parametrize(("qos", "shown"), [(True, "true"), (1.0, "1.0"), ("one", "'one'")])
    def test_subscription_qos_not_an_integer(self, tmp_path: Path, qos: object, shown: str) -> None:
        """A boolean, a float or a word is not a QoS level."""
        assert error(tmp_path, subscribe(qos=qos)) == (
            f"subscriptions[0].qos: must be 0 or 1, got {shown}"
        )

    def test_subscription_decode_lists_choices(self, tmp_path: Path) -> None:
        """An unknown decode lists the built-in decodings and the user decoder's form."""
        assert error(tmp_path, subscribe(decode="xml")) == (
            "subscriptions[0].decode: must be 'json', 'text', 'bytes', 'msgpack' or a"
            " decoder's 'package.module:function', got 'xml'"
        )

    def test_subscription_filter_is_validated(self, tmp_path: Path) -> None:
        """A malformed filter gives the topic module's message at its key."""
        assert error(tmp_path, subscribe(filter="a/#/b")) == (
            "subscriptions[0].filter: invalid topic filter 'a/#/b': '#' must be the last level"
            " (level 2: '#')"
        )

    def test_subscription_filter_is_required(self, tmp_path: Path) -> None:
        """A subscription without a filter is an error."""
        data = base(subscriptions=[{"qos": 1}])
        assert error(tmp_path, data) == "subscriptions[0].filter: required key is missing"

    def test_subscription_compiles_matcher_and_templates(self, tmp_path: Path) -> None:
        """The matcher and templates are ready to match and render."""
        data = subscribe(filter="sensors/+/+/temperature", topics=["temperature", "site/{1}"])
        sub = load(tmp_path, data).subscriptions[0]
        captures = sub.matcher.match("sensors/home/kitchen/temperature")
        assert captures == ("home", "kitchen")
        assert [t.render("x", captures) for t in sub.templates] == ["temperature", "site/home"]

    def test_subscription_template_beyond_captures(self, tmp_path: Path) -> None:
        """A template naming a capture the filter lacks is an error at its index."""
        data = subscribe(filter="sensors/+/+/temperature", topics=["temperature", "site/{3}"])
        assert error(tmp_path, data) == (
            "subscriptions[0].topics[1]: topic template 'site/{3}': '{3}' names capture 3 but"
            " the filter has only 2 wildcards"
        )

    def test_subscription_topics_not_empty(self, tmp_path: Path) -> None:
        """topics: [] is refused."""
        assert error(tmp_path, subscribe(topics=[])) == (
            "subscriptions[0].topics: must not be empty"
        )

    def test_subscription_share_group_prefixes_the_filter(self, tmp_path: Path) -> None:
        """mqtt_filter is $share/<group>/<filter>; matching uses the plain filter."""
        sub = load(tmp_path, subscribe(share_group="collectors")).subscriptions[0]
        assert sub.mqtt_filter == "$share/collectors/sensors/#"
        assert sub.matcher == TopicFilter("sensors/#")

    def test_subscription_shared_filter_accepted(self, tmp_path: Path) -> None:
        """A $share/ filter is subscribed as written and matched without its prefix."""
        sub = load(tmp_path, subscribe(filter="$share/g/sensors/#")).subscriptions[0]
        assert sub.mqtt_filter == "$share/g/sensors/#"
        assert sub.matcher.match("sensors/a") == ("a",)

    @pytest.mark.parametrize("group", ["a/b", "a+", "#"])
    def test_subscription_share_group_characters(self, tmp_path: Path, group: str) -> None:
        """A share group must not contain /, + or #."""
        assert error(tmp_path, subscribe(share_group=group)) == (
            f"subscriptions[0].share_group: must not contain '/', '+' or '#', got {group!r}"
        )

    def test_subscription_share_group_with_shared_filter(self, tmp_path: Path) -> None:
        """share_group and a $share/ filter together are an error."""
        data = subscribe(filter="$share/g/sensors/#", share_group="h")
        assert error(tmp_path, data) == (
            "subscriptions[0].share_group: cannot be combined with a $share/ filter"
        )

    def test_subscription_max_body_bytes_positive(self, tmp_path: Path) -> None:
        """max_body_bytes must be greater than 0."""
        assert error(tmp_path, subscribe(max_body_bytes=0)) == (
            "subscriptions[0].max_body_bytes: must be greater than 0, got 0"
        )

    def test_subscription_priority_integer(self, tmp_path: Path) -> None:
        """The priority must be an integer."""
        assert error(tmp_path, subscribe(priority="high")) == (
            "subscriptions[0].priority: must be an integer, got 'high'"
        )


class TestStrings:
    """Route keys that are strings refuse YAML numbers, booleans and dates."""

    @pytest.mark.parametrize(
        ("subscription", "collector", "loc"),
        [
            ("filter: 123", "key: k, topics: [a]", "subscriptions[0].filter"),
            ("filter: a, topics: [2024]", "key: k, topics: [a]", "subscriptions[0].topics[0]"),
            ("filter: a, share_group: 7", "key: k, topics: [a]", "subscriptions[0].share_group"),
            ("filter: a", "key: 0755, topics: [a]", "collectors[0].key"),
            ("filter: a", "key: k, topics: [1.5]", "collectors[0].topics[0]"),
            (
                "filter: a",
                "key: k, topics: [a], dead_letter: {topic: 404}",
                "collectors[0].dead_letter.topic",
            ),
        ],
    )
    def test_route_string_key_refuses_a_number(
        self, tmp_path: Path, subscription: str, collector: str, loc: str
    ) -> None:
        """A number where a string belongs says to quote it."""
        assert error(tmp_path, _routes(subscription, collector)) == (
            f"{loc}: must be a string; quote it ('0123' in YAML is read as a number)"
        )

    def test_collector_options_values_left_alone(self, tmp_path: Path) -> None:
        """The options values are free: numbers, booleans and dates stay as YAML read them."""
        text = _routes("filter: a", "key: k, topics: [a], options: {mode: 0755, sync: yes}")
        assert dict(load(tmp_path, text).collectors[0].options) == {"mode": 493, "sync": True}

    def test_collector_options_key_must_be_a_string(self, tmp_path: Path) -> None:
        """An options key YAML reads as a number is refused, not turned into its digits."""
        text = _routes("filter: a", "key: k, topics: [a], options: {0755: x}")
        assert error(tmp_path, text) == (
            "collectors[0].options: key 493 must be a string; quote it ('0123' in YAML is read"
            " as a number)"
        )


class TestCollector:
    """collectors[i]."""

    def test_collector_resolves_processor_and_lifecycle(self, tmp_path: Path) -> None:
        """The processor and lifecycle are the imported objects; their paths are kept."""
        data = collect(lifecycle="tests.sample_collectors:lifecycle")
        found = load(tmp_path, data).collectors[0]
        assert found.processor is sample_collectors.store
        assert found.lifecycle is sample_collectors.lifecycle
        assert found.processor_path == "tests.sample_collectors:store"
        assert found.lifecycle_path == "tests.sample_collectors:lifecycle"

    def test_collector_defaults(self, tmp_path: Path) -> None:
        """No lifecycle, empty options, no timeout, one attempt, no dead letter."""
        found = load(tmp_path, base()).collectors[0]
        assert (found.lifecycle, found.lifecycle_path, dict(found.options)) == (None, None, {})
        assert (found.timeout, found.retry.attempts, found.dead_letter) == (None, 1, None)
        assert (found.retry.backoff, found.retry.max_backoff) == (0.5, 30.0)

    def test_collector_missing_attribute(self, tmp_path: Path) -> None:
        """A processor that does not exist names the module and attribute."""
        data = base(
            collectors=[collector(), collector(key="b", processor="tests.sample_collectors:stor")]
        )
        assert error(tmp_path, data) == (
            "collectors[1].processor: cannot import 'tests.sample_collectors:stor':"
            " module 'tests.sample_collectors' has no attribute 'stor'"
        )

    def test_collector_missing_module(self, tmp_path: Path) -> None:
        """A module that does not exist gives Python's reason."""
        assert error(tmp_path, collect(processor="nosuch_mod_for_tests.mod:x")) == (
            "collectors[0].processor: cannot import 'nosuch_mod_for_tests.mod:x':"
            " No module named 'nosuch_mod_for_tests'"
        )

    def test_collector_malformed_path(self, tmp_path: Path) -> None:
        """A path without a colon names the expected form."""
        assert error(tmp_path, collect(processor="tests.sample_collectors.store")) == (
            "collectors[0].processor: 'tests.sample_collectors.store' is not of the form"
            " 'package.module:attribute'"
        )

    def test_collector_processor_not_a_string(self, tmp_path: Path) -> None:
        """A processor given as a list is a type error."""
        assert error(tmp_path, collect(processor=["a"])) == (
            "collectors[0].processor: must be a string 'package.module:attribute', got a list"
        )

    @pytest.mark.parametrize("name", ["sync_processor", "AsyncCallable", "not_callable"])
    def test_collector_processor_not_async(self, tmp_path: Path, name: str) -> None:
        """A sync function, a class or a non-callable is not an async function."""
        path = f"tests.sample_collectors:{name}"
        assert error(tmp_path, collect(processor=path)) == (
            f"collectors[0].processor: {path!r} is not an async function"
        )

    @pytest.mark.parametrize("name", ["async_instance", "Holder.store"])
    def test_collector_processor_async_callable(self, tmp_path: Path, name: str) -> None:
        """An object with an async __call__ and a dotted attribute are accepted."""
        data = collect(processor=f"tests.sample_collectors:{name}")
        assert load(tmp_path, data).collectors[0].processor_path.endswith(name)

    def test_collector_lifecycle_not_callable(self, tmp_path: Path) -> None:
        """A lifecycle must be callable."""
        assert error(tmp_path, collect(lifecycle="tests.sample_collectors:not_callable")) == (
            "collectors[0].lifecycle: 'tests.sample_collectors:not_callable' is not callable"
        )

    def test_collector_duplicate_key(self, tmp_path: Path) -> None:
        """A key used twice is an error at the second one."""
        data = base(collectors=[collector(), collector()])
        assert error(tmp_path, data) == (
            "collectors[1].key: duplicate key 'store' (also collectors[0].key)"
        )

    def test_collector_empty_key(self, tmp_path: Path) -> None:
        """An empty key is refused."""
        assert error(tmp_path, collect(key="")) == "collectors[0].key: must not be empty"

    def test_collector_topics_required(self, tmp_path: Path) -> None:
        """The topics list must not be empty."""
        assert error(tmp_path, collect(topics=[])) == "collectors[0].topics: must not be empty"

    def test_collector_topics_a_list(self, tmp_path: Path) -> None:
        """Topics given as one string is a type error, not a list of characters."""
        assert error(tmp_path, collect(topics="temperature")) == (
            "collectors[0].topics: must be a list, got 'temperature'"
        )

    def test_collector_options_read_only(self, tmp_path: Path) -> None:
        """The options and the mappings inside it cannot be changed; lists become tuples."""
        data = collect(options={"path": "x", "nested": {"a": [1, 2]}})
        options: Any = load(tmp_path, data).collectors[0].options
        assert options["nested"]["a"] == (1, 2)
        with pytest.raises(TypeError):
            options["path"] = "y"
        with pytest.raises(TypeError):
            options["nested"]["a"] = 1

    def test_collector_options_null_is_empty(self, tmp_path: Path) -> None:
        """An empty options: key means no options."""
        assert dict(load(tmp_path, collect(options=None)).collectors[0].options) == {}

    def test_collector_options_mapping(self, tmp_path: Path) -> None:
        """The options must be a mapping."""
        assert error(tmp_path, collect(options=[1])) == (
            "collectors[0].options: must be a mapping, got a list"
        )

    def test_collector_options_serialise(self, tmp_path: Path) -> None:
        """model_dump gives plain dicts and lists back, without warnings."""
        config = load(tmp_path, collect(options={"a": {"b": [1]}}))
        assert config.model_dump()["collectors"][0]["options"] == {"a": {"b": [1]}}

    def test_collector_timeout_positive(self, tmp_path: Path) -> None:
        """The timeout must be greater than 0."""
        assert error(tmp_path, collect(timeout=0)) == (
            "collectors[0].timeout: must be greater than 0, got 0"
        )

    def test_collector_retry_attempts_at_least_one(self, tmp_path: Path) -> None:
        """The retry attempts must be >= 1."""
        assert error(tmp_path, collect(retry={"attempts": 0})) == (
            "collectors[0].retry.attempts: must be at least 1, got 0"
        )

    def test_collector_retry_max_backoff_below_backoff(self, tmp_path: Path) -> None:
        """max_backoff must not be below backoff."""
        assert error(tmp_path, collect(retry={"backoff": 2, "max_backoff": 1})) == (
            "collectors[0].retry: max_backoff (1) is less than backoff (2)"
        )

    def test_collector_dead_letter(self, tmp_path: Path) -> None:
        """dead_letter keeps its topic; qos defaults to 1."""
        found = load(tmp_path, collect(dead_letter={"topic": "dead/store"})).collectors[0]
        assert found.dead_letter is not None
        assert (found.dead_letter.topic, found.dead_letter.qos) == ("dead/store", 1)

    def test_collector_dead_letter_qos_0(self, tmp_path: Path) -> None:
        """A dead letter may be published at QoS 0."""
        data = collect(dead_letter={"topic": "dead/store", "qos": 0})
        found = load(tmp_path, data).collectors[0].dead_letter
        assert found is not None
        assert found.qos == 0

    def test_collector_dead_letter_qos_2_refused(self, tmp_path: Path) -> None:
        """A dead letter at QoS 2 is refused, saying why and to use 1."""
        assert error(tmp_path, collect(dead_letter={"topic": "dead/store", "qos": 2})) == (
            "collectors[0].dead_letter.qos: QoS 2 is not supported: its handshake cannot be"
            " completed across a reconnect; use 1"
        )

    def test_collector_dead_letter_topic_without_wildcards(self, tmp_path: Path) -> None:
        """A dead-letter topic is a topic name: no wildcards."""
        assert error(tmp_path, collect(dead_letter={"topic": "dead/+"})) == (
            "collectors[0].dead_letter.topic: invalid topic name 'dead/+': contains the"
            " wildcard '+', which only topic filters may use"
        )
