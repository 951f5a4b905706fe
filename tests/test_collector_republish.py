"""The republish collector: its logic on the test kit, its guarantees on a daemon and a broker."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
import yaml

from mqtt_collector import ConfigError, Context, Error, Message, Ok, Payload
from mqtt_collector._config.load import load_config
from mqtt_collector._exceptions import TransportError
from mqtt_collector.collectors import republish
from mqtt_collector.testing import MemoryTransport, Published, TestDaemon
from tests.examples.helpers import acked
from tests.helpers.daemon import make_config, run_daemon, wait_until
from tests.helpers.mosquitto import Mosquitto
from tests.helpers.mqtt_client import connected_client

PROCESSOR = "mqtt_collector.collectors.republish:publish"


def _entry(options: Mapping[str, Any]) -> dict[str, Any]:
    """A ``collectors:`` entry for a republish collector ``copy`` fed by the topic ``in``."""
    return {"key": "copy", "processor": PROCESSOR, "topics": ["in"], "options": dict(options)}


def _kit_config(
    tmp_path: Path, options: Mapping[str, Any], *, decode: str = "json", **entry: Any
) -> Path:
    """A config feeding ``sensors/+/+`` to a republish collector with ``options``."""
    path = tmp_path / "config.yaml"
    tree = {
        "subscriptions": [{"filter": "sensors/+/+", "topics": ["in"], "decode": decode}],
        "collectors": [{**_entry(options), **entry}],
    }
    path.write_text(yaml.safe_dump(tree), encoding="utf-8")
    return path


class TestOnTheKit:
    """What is published, and what is refused, on the in-memory broker."""

    async def test_republish_publishes_the_body_as_received(self, tmp_path: Path) -> None:
        """The raw body goes to the rendered topic at the chosen QoS and retain flag."""
        options = {"topic": "clean/{2}/{1}", "qos": 0, "retain": True}
        async with TestDaemon(_kit_config(tmp_path, options)) as daemon:
            outcome = await daemon.publish("sensors/north/t1", b'{"t":  21.5 }')
        assert outcome.acked
        assert outcome.results.first() == Ok("clean/t1/north")
        assert daemon.published == [Published("clean/t1/north", b'{"t":  21.5 }', 0, (), True)]

    async def test_republish_defaults_to_qos_1_not_retained(self, tmp_path: Path) -> None:
        """Without options beyond the topic: QoS 1, not retained; ``{topic}`` is the topic."""
        async with TestDaemon(_kit_config(tmp_path, {"topic": "copy/{topic}"})) as daemon:
            await daemon.publish("sensors/north/t1", b"1")
        assert daemon.published == [Published("copy/sensors/north/t1", b"1", 1, (), False)]

    async def test_republish_body_json_encodes_data_again(self, tmp_path: Path) -> None:
        """``body: json``: the decoded data as compact JSON, not the bytes as received."""
        options = {"topic": "clean/{1}", "body": "json"}
        async with TestDaemon(_kit_config(tmp_path, options)) as daemon:
            await daemon.publish("sensors/north/t1", b'{ "t" : 21.5, "u": "\\u00b0C" }')
        assert [p.body for p in daemon.published] == ['{"t":21.5,"u":"°C"}'.encode()]

    async def test_republish_body_json_of_bytes_is_an_error(self, tmp_path: Path) -> None:
        """``body: json`` with ``decode: bytes`` cannot encode: an Error, nothing published."""
        options = {"topic": "clean/{1}", "body": "json"}
        async with TestDaemon(_kit_config(tmp_path, options, decode="bytes")) as daemon:
            outcome = await daemon.publish("sensors/north/t1", b"\x00\x01")
        result = outcome.results.first()
        assert isinstance(result, Error)
        assert "decode: bytes" in str(result.exception)
        assert daemon.published == []

    async def test_republish_refuses_to_feed_its_own_filter(self, tmp_path: Path) -> None:
        """A copy the original's filter would match is not published: an Error says why."""
        async with TestDaemon(_kit_config(tmp_path, {"topic": "sensors/copy/{2}"})) as daemon:
            outcome = await daemon.publish("sensors/north/t1", b"1")
        result = outcome.results.first()
        assert isinstance(result, Error)
        assert str(result.exception) == (
            "not published to 'sensors/copy/t1': the filter 'sensors/+/+' matches it,"
            " so the copy would come back to be republished without end"
        )
        assert daemon.published == []

    async def test_republish_a_capture_the_filter_lacks_is_an_error(self, tmp_path: Path) -> None:
        """``{3}`` from a filter of two wildcards: an Error naming both, nothing published."""
        async with TestDaemon(_kit_config(tmp_path, {"topic": "clean/{3}"})) as daemon:
            outcome = await daemon.publish("sensors/north/t1", b"1")
        result = outcome.results.first()
        assert isinstance(result, Error)
        assert "'{3}' names capture 3 but the filter 'sensors/+/+' has 2" in str(result.exception)
        assert daemon.published == []

    async def test_republish_a_failed_publish_is_retried(self, tmp_path: Path) -> None:
        """A publish that raises is the message's Error: retried, then published once."""

        class FailsOnce(MemoryTransport):
            failures = 1

            async def publish(self, topic: str, body: bytes, **keys: Any) -> None:
                if self.failures:
                    self.failures -= 1
                    raise TransportError("the publishing connection was lost")
                await super().publish(topic, body, **keys)

        config = _kit_config(tmp_path, {"topic": "clean/{1}"}, retry={"attempts": 2, "backoff": 0})
        async with TestDaemon(config, transport=FailsOnce()) as daemon:
            outcome = await daemon.publish("sensors/north/t1", b"1")
        assert outcome.acked
        assert outcome.results.is_ok()
        assert daemon.published == [Published("clean/north", b"1", 1)]
        assert (
            daemon.sample("mqtt_collector_deliveries_total", collector="copy", outcome="retry") == 1
        )

    async def test_republish_without_ctx_publish_is_an_error(self) -> None:
        """Outside the daemon (no ``ctx.publish``) it says what it needs."""
        ctx = Context(key="copy", options=MappingProxyType({"topic": "x/{1}"}))
        message = Message(topic="a/b", data=None, raw=b"", captures=("b",), subscription="a/+")
        result = await republish.publish(Payload(message), ctx)
        assert isinstance(result, Error)
        assert "republish needs ctx.publish" in str(result.exception)


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({}, "option 'topic': is required"),
        ({"topic": ""}, "option 'topic': must be a non-empty string"),
        ({"topic": "a/+/{1}"}, "'+', '#' (or NUL) are not allowed"),
        ({"topic": "a/#"}, "'+', '#' (or NUL) are not allowed"),
        ({"topic": "$SYS/{1}"}, "must not start with '$'"),
        ({"topic": "a/{1"}, "unbalanced '{' at position 2"),
        ({"topic": "a/1}"}, "unbalanced '}' at position 3"),
        ({"topic": "a/{0}"}, "unknown field '{0}'"),
        ({"topic": "a/{site}"}, "unknown field '{site}'"),
        ({"topic": "a", "qos": 2}, "option 'qos': must be 0 or 1, got 2"),
        ({"topic": "a", "qos": True}, "option 'qos': must be 0 or 1, got True"),
        ({"topic": "a", "retain": "yes"}, "option 'retain': must be true or false"),
        ({"topic": "a", "body": "text"}, "option 'body': must be one of raw, json"),
        ({"topic": "a", "properties": True}, "option 'properties': unknown option"),
    ],
)
async def test_republish_refuses_a_bad_option_in_one_line(
    options: dict[str, Any], error: str
) -> None:
    """A wrong option is a one-line ConfigError naming the collector and the option."""
    ctx = Context(key="copy", options=MappingProxyType(options))
    message = Message(topic="a/b", data=None, raw=b"", captures=("b",), subscription="a/+")
    with pytest.raises(ConfigError) as raised:
        await republish.publish(Payload(message), ctx)
    text = str(raised.value)
    assert text.startswith("collector 'copy': option ")
    assert error in text
    assert "\n" not in text


def test_republish_a_bad_template_is_refused_when_the_config_loads(tmp_path: Path) -> None:
    """``check`` and ``run`` refuse a bad template before anything connects."""
    with pytest.raises(ConfigError, match=r"collectors\[0\]\.options\.topic: .*'\+', '#'"):
        load_config(_kit_config(tmp_path, {"topic": "clean/+"}))


@pytest.fixture(params=["aiomqtt", "gmqtt"])
def client(request: pytest.FixtureRequest) -> str:
    """The daemon's MQTT client library: the publish goes through either transport."""
    return str(request.param)


@pytest.mark.broker
class TestOnABroker:
    """On a real daemon and a real Mosquitto."""

    def _config(
        self, tmp_path: Path, mosquitto: Mosquitto, prefix: str, client: str, **options: Any
    ) -> Any:
        return make_config(
            tmp_path,
            port=mosquitto.port,
            prefix=prefix,
            broker={"client": client, "client_id": f"republish-{client}"},
            subscriptions=[
                {"filter": f"{prefix}/raw/+/+", "qos": 1, "topics": ["in"], "decode": "bytes"}
            ],
            collectors=[_entry({"topic": f"{prefix}/clean/{{1}}/{{2}}", **options})],
        )

    async def test_republish_copies_arrive_retained(
        self, mosquitto: Mosquitto, topic_prefix: str, tmp_path: Path, client: str
    ) -> None:
        """With ``retain: true`` the broker keeps each copy: a later subscriber gets it retained."""
        config = self._config(tmp_path, mosquitto, topic_prefix, client, retain=True)
        bodies = {("north", "t1"): b'{"t": 1}', ("south", "t2"): b"\xff raw"}
        async with run_daemon(config) as daemon:
            with connected_client(mosquitto.port) as publisher:
                for (site, device), body in bodies.items():
                    publisher.publish(f"{topic_prefix}/raw/{site}/{device}", body, qos=1)
            await wait_until(lambda: acked(daemon) == len(bodies), what="both acknowledged")
        with connected_client(mosquitto.port, subscribe=f"{topic_prefix}/clean/#") as late:
            await wait_until(lambda: len(late.received()) == len(bodies), what="the copies")
            got = {(m.topic, m.payload, m.retain, m.qos) for m in late.received()}
        assert got == {
            (f"{topic_prefix}/clean/{site}/{device}", body, True, 1)
            for (site, device), body in bodies.items()
        }
        with connected_client(mosquitto.port) as cleaner:  # the broker is shared: clear them
            for site, device in bodies:
                cleaner.publish(f"{topic_prefix}/clean/{site}/{device}", b"", retain=True)

    async def test_republish_the_original_is_acked_only_after_its_copy(
        self,
        mosquitto: Mosquitto,
        topic_prefix: str,
        tmp_path: Path,
        client: str,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """While the copy's publish has not returned (PUBACK), the original stays unacked."""
        config = self._config(tmp_path, mosquitto, topic_prefix, client)
        async with run_daemon(config) as daemon:
            transport = daemon.transport
            real = transport.publish
            entered, release = asyncio.Event(), asyncio.Event()

            async def held(topic: str, body: bytes, **keys: Any) -> None:
                entered.set()
                await release.wait()
                await real(topic, body, **keys)

            monkeypatch.setattr(transport, "publish", held)
            with connected_client(mosquitto.port, subscribe=f"{topic_prefix}/clean/#") as copies:
                with connected_client(mosquitto.port) as publisher:
                    publisher.publish(f"{topic_prefix}/raw/north/t1", b"21.5", qos=1)
                async with asyncio.timeout(10):
                    await entered.wait()
                assert acked(daemon) == 0
                assert transport.unacked() == 1
                release.set()
                await wait_until(lambda: acked(daemon) == 1, what="the original acknowledged")
                await wait_until(lambda: len(copies.received()) == 1, what="the copy")
                [copy] = copies.received()
        assert (copy.topic, copy.payload) == (f"{topic_prefix}/clean/north/t1", b"21.5")
