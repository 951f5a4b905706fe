"""``decode: msgpack`` and user decoders (``decode: package.module:function``).

Checked at load (the extra installed, the function importable, callable, synchronous and
callable as ``decoder(body, topic)``), in the mapper (what a body becomes, what is refused and
why), and once through the daemon on a real broker: a refused message is logged, counted and
acknowledged, and the next one reaches the collector.
"""

from __future__ import annotations

import datetime as dt
import sys
import uuid
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import msgpack
import pytest
from prometheus_client import CollectorRegistry

from mqtt_collector._cli import main
from mqtt_collector._daemon.mapper import Mapper, MappingError, Route
from mqtt_collector._mqtt.template import TopicTemplate
from mqtt_collector._mqtt.topic import TopicFilter
from mqtt_collector._mqtt.transport import Inbound
from tests import sample_decoders
from tests.helpers.config import base, error, load, subscription, write
from tests.helpers.daemon import (
    capture_logging,
    make_config,
    records,
    run_daemon,
    wait_until,
)
from tests.helpers.mqtt_client import connected_client

if TYPE_CHECKING:
    from pathlib import Path

    from mqtt_collector._config.routes import Decoder
    from tests.helpers.mosquitto import Mosquitto

DECODERS = "tests.sample_decoders"
MISSING_MSGPACK = (
    "subscriptions[0].decode: msgpack needs the msgpack package, which cannot be imported"
    " (import of msgpack halted; None in sys.modules): pip install 'mqtt-collector[msgpack]'"
)


def _decoding(decode: str) -> dict[str, Any]:
    """A configuration whose one subscription decodes as ``decode``."""
    return base(subscriptions=[subscription(decode=decode)])


class TestConfig:
    """subscriptions[i].decode, checked when the configuration is loaded."""

    def test_decode_msgpack_is_accepted(self, tmp_path: Path) -> None:
        """decode: msgpack loads when the package is installed; it names no user decoder."""
        sub = load(tmp_path, _decoding("msgpack")).subscriptions[0]
        assert (sub.decode, sub.decoder) == ("msgpack", None)

    def test_decode_msgpack_without_the_package_names_the_extra(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Without msgpack, one line names the key and the extra to install."""
        monkeypatch.setitem(sys.modules, "msgpack", None)  # makes `import msgpack` fail
        assert error(tmp_path, _decoding("msgpack")) == MISSING_MSGPACK

    def test_check_refuses_msgpack_without_the_package(
        self,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """``mqtt-collector check`` exits 2 with that one line and no traceback."""
        monkeypatch.setitem(sys.modules, "msgpack", None)
        path = write(tmp_path, _decoding("msgpack"))
        assert main(["check", "--config", str(path)]) == 2
        out = capsys.readouterr()
        assert out.err.splitlines() == [f"{path}: {MISSING_MSGPACK}"]

    def test_decode_user_decoder_is_imported_at_load(self, tmp_path: Path) -> None:
        """A 'package.module:function' is imported once, at load, and kept as written."""
        sub = load(tmp_path, _decoding(f"{DECODERS}:decimal")).subscriptions[0]
        assert sub.decode == f"{DECODERS}:decimal"
        assert sub.decoder is sample_decoders.decimal

    def test_decode_user_decoder_found_beside_the_config(self, tmp_path: Path) -> None:
        """A decoder module in the configuration file's directory is found, as processors are."""
        name = f"decoders_{uuid.uuid4().hex[:8]}"
        (tmp_path / f"{name}.py").write_text(
            "def decode(body, topic):\n    return body.upper()\n", encoding="utf-8"
        )
        sub = load(tmp_path, _decoding(f"{name}:decode")).subscriptions[0]
        assert sub.decoder is not None
        assert sub.decoder(b"abc", "t") == b"ABC"

    @pytest.mark.parametrize(
        ("decode", "expected"),
        [
            pytest.param(
                "nosuch_decoders_for_tests:decode",
                "cannot import 'nosuch_decoders_for_tests:decode':"
                " No module named 'nosuch_decoders_for_tests'",
                id="no-module",
            ),
            pytest.param(
                f"{DECODERS}:nope",
                f"cannot import '{DECODERS}:nope': module '{DECODERS}' has no attribute 'nope'",
                id="no-attribute",
            ),
            pytest.param(
                "a:b:c",
                "'a:b:c' is not of the form 'package.module:attribute'",
                id="malformed",
            ),
            pytest.param(
                f"{DECODERS}:NOT_CALLABLE",
                f"'{DECODERS}:NOT_CALLABLE' is not callable",
                id="not-callable",
            ),
            pytest.param(
                f"{DECODERS}:coroutine_decoder",
                f"'{DECODERS}:coroutine_decoder' is an async function; a decoder must be a"
                " plain function (it runs on the receive path, before the message is queued)",
                id="async-function",
            ),
            pytest.param(
                f"{DECODERS}:async_instance",
                f"'{DECODERS}:async_instance' is an async function; a decoder must be a"
                " plain function (it runs on the receive path, before the message is queued)",
                id="async-call",
            ),
            pytest.param(
                f"{DECODERS}:one_argument",
                f"'{DECODERS}:one_argument' cannot be called as decoder(body, topic):"
                " too many positional arguments",
                id="one-argument",
            ),
        ],
    )
    def test_decode_bad_user_decoder_is_one_line_at_its_key(
        self, tmp_path: Path, decode: str, expected: str
    ) -> None:
        """A decoder that cannot be imported or used is refused at load, at its key."""
        assert error(tmp_path, _decoding(decode)) == f"subscriptions[0].decode: {expected}"


def _route(decode: str, decoder: Decoder | None = None) -> Route:
    matcher = TopicFilter("s/+")
    return Route(
        filter="s/+",
        matcher=matcher,
        templates=(TopicTemplate("all", wildcards=matcher.wildcards),),
        decode=decode,
        decoder=decoder,
        priority=None,
        max_body_bytes=None,
    )


def _data(route: Route, body: bytes, topic: str = "s/kitchen") -> object:
    """Map ``body`` on ``topic`` by ``route`` and return the Message's data."""
    inbound = Inbound(topic, body, 1, False, 1, MappingProxyType({}), 1)
    payload = Mapper([route], default_priority=0).map(inbound)
    assert payload is not None
    return payload.value.data


def _refusal(route: Route, body: bytes) -> str:
    """Map ``body`` by ``route``, expecting a decode refusal; return its reason."""
    with pytest.raises(MappingError) as caught:
        _data(route, body)
    assert caught.value.reason == "decode"
    return str(caught.value)


class TestMsgpack:
    """decode: msgpack in the mapper."""

    def test_msgpack_body_is_decoded(self) -> None:
        """Maps, arrays, strings, numbers; binary stays bytes; a timestamp is a UTC datetime."""
        when = dt.datetime(2024, 5, 1, 12, 0, 30, tzinfo=dt.UTC)
        body = msgpack.packb(
            {"sensor": "t1", "celsius": 21.5, "raw": b"\x00\xff", "tags": [1, "a"], "at": when},
            datetime=True,
        )
        assert _data(_route("msgpack"), body) == {
            "sensor": "t1",
            "celsius": 21.5,
            "raw": b"\x00\xff",
            "tags": [1, "a"],
            "at": when,
        }

    @pytest.mark.parametrize(
        ("body", "reason"),
        [
            (b"", "invalid msgpack: Unpack failed: incomplete input"),
            (b"\x92\x01", "invalid msgpack: Unpack failed: incomplete input"),
            (b"\x01\x02", "invalid msgpack: unpack(b) received extra data."),
            (b"\xc1", "invalid msgpack: FormatError"),
            (b"\xa2\xff\xfe", "invalid msgpack: 'utf-8' codec can't decode byte 0xff"),
            (
                b"\x81\x01\x02",
                "invalid msgpack: int is not allowed for map key when strict_map_key=True",
            ),
            (b"\x91" * 100_000, "invalid msgpack: StackError"),
        ],
        ids=["empty", "truncated", "extra-data", "reserved-byte", "bad-utf8", "int-key", "deep"],
    )
    def test_msgpack_bad_body_is_refused_with_its_reason(self, body: bytes, reason: str) -> None:
        """A body that is not valid msgpack is a decode refusal saying why."""
        assert _refusal(_route("msgpack"), body).startswith(reason)


class TestUserDecoder:
    """decode: package.module:function in the mapper."""

    def test_user_decoder_value_becomes_data(self) -> None:
        """The decoder gets the body and the MQTT topic; what it returns is message.data."""
        route = _route(f"{DECODERS}:decimal", sample_decoders.decimal)
        assert _data(route, b"42", "s/kitchen") == {"level": "kitchen", "value": 42}

    def test_user_decoder_exception_is_a_refusal(self) -> None:
        """An exception is a decode refusal naming the decoder, the type and the message."""
        route = _route(f"{DECODERS}:decimal", sample_decoders.decimal)
        assert _refusal(route, b"nope") == (
            f"decoder {DECODERS}:decimal raised ValueError:"
            " invalid literal for int() with base 10: b'nope'"
        )

    @pytest.mark.parametrize(
        ("name", "raised"),
        [
            ("raises_base_exception", "DecoderFault: not an Exception"),
            ("raises_cancelled", "CancelledError"),
            ("raises_unprintable", "Unprintable"),
        ],
        ids=["base-exception", "cancelled", "unprintable"],
    )
    def test_user_decoder_fault_of_any_kind_is_a_refusal(self, name: str, raised: str) -> None:
        """A BaseException, its own CancelledError, an exception with no text: all refusals."""
        route = _route(f"{DECODERS}:{name}", getattr(sample_decoders, name))
        assert _refusal(route, b"x") == f"decoder {DECODERS}:{name} raised {raised}"

    @pytest.mark.parametrize(
        ("name", "raised"),
        [("raises_system_exit", SystemExit), ("raises_keyboard_interrupt", KeyboardInterrupt)],
        ids=["system-exit", "keyboard-interrupt"],
    )
    def test_user_decoder_request_to_stop_goes_through(
        self, name: str, raised: type[BaseException]
    ) -> None:
        """SystemExit and KeyboardInterrupt ask the process to stop: they are not refusals."""
        route = _route(f"{DECODERS}:{name}", getattr(sample_decoders, name))
        with pytest.raises(raised):
            _data(route, b"x")

    def test_user_decoder_reason_is_one_bounded_line(self) -> None:
        """A message quoting a large body over several lines is cut, on one line."""
        route = _route(f"{DECODERS}:quotes_the_body", sample_decoders.quotes_the_body)
        reason = _refusal(route, b"x" * 10_000)
        assert "\n" not in reason
        assert reason.startswith(
            f"decoder {DECODERS}:quotes_the_body raised ValueError: cannot parse b'xxx"
        )
        assert reason.endswith("...")
        assert len(reason) < 300

    def test_user_decoder_returning_a_coroutine_is_a_refusal(self) -> None:
        """A coroutine returned is closed (never left unawaited) and the message refused."""
        route = _route(f"{DECODERS}:returns_coroutine", sample_decoders.returns_coroutine)
        assert _refusal(route, b"x") == (
            f"decoder {DECODERS}:returns_coroutine returned a coroutine;"
            " a decoder must be synchronous"
        )


def _sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else float(value)


@pytest.mark.broker
async def test_daemon_user_decoder_refusal_is_acked_and_the_next_message_arrives(
    mosquitto: Mosquitto, topic_prefix: str, tmp_path: Path
) -> None:
    """A refused message is logged, counted and acked (not sent again); the next one arrives."""
    p = topic_prefix
    config = make_config(
        tmp_path,
        port=mosquitto.port,
        prefix=p,
        # A persistent session: a message left unacknowledged would come again on reconnect.
        broker={"client_id": f"decode-{uuid.uuid4().hex[:8]}", "session": {"expiry": 60}},
        subscriptions=[{"filter": f"{p}/d/+", "decode": f"{DECODERS}:decimal", "topics": ["all"]}],
    )
    with capture_logging("info") as logs:
        async with run_daemon(config) as daemon:
            with connected_client(mosquitto.port) as publisher:
                publisher.publish(f"{p}/d/bad", b"nope", qos=1)
                publisher.publish(f"{p}/d/good", b"42", qos=1)
            await wait_until(lambda: records(daemon), what="the decoded message")
            registry = daemon.metrics.registry
            await wait_until(
                lambda: _sample(registry, "mqtt_collector_messages_acked_total") == 2,
                what="both messages acked",
            )
            rejected = _sample(registry, "mqtt_collector_messages_rejected_total", reason="decode")
            first = records(daemon)
        async with run_daemon(config) as again:
            with connected_client(mosquitto.port) as publisher:
                publisher.publish(f"{p}/d/later", b"7", qos=1)
            await wait_until(lambda: records(again), what="the message after the restart")
            second = records(again)
    assert [(r.topic, r.data) for r in first] == [(f"{p}/d/good", {"level": "good", "value": 42})]
    assert rejected == 1
    [refused] = logs.events("message refused")
    assert (refused["topic"], refused["kind"], refused["size"]) == (f"{p}/d/bad", "decode", 4)
    assert refused["reason"] == (
        f"decoder {DECODERS}:decimal raised ValueError:"
        " invalid literal for int() with base 10: b'nope'"
    )
    # Only the new message: the refused one was acknowledged, so the session kept nothing.
    assert [(r.topic, r.data) for r in second] == [(f"{p}/d/later", {"level": "later", "value": 7})]
