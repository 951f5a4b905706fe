"""Tests for the ``broker:`` section of the configuration."""

from __future__ import annotations

import importlib.util
import re
import socket
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from mqtt_collector._config.load import Protocol
from tests.helpers.config import base, error, load

if TYPE_CHECKING:
    from pathlib import Path


# The subscriptions and collectors of base(), as YAML text, for tests that write YAML by hand.
_ROUTES = yaml.safe_dump({key: value for key, value in base().items() if key != "broker"})


def broker(**keys: Any) -> dict[str, Any]:
    """A configuration whose broker section is ``keys``."""
    return base(broker=keys)


class TestConnection:
    """client, host, port, protocol, keepalive, receive_maximum."""

    def test_broker_defaults(self, tmp_path: Path) -> None:
        """Without a broker section, the documented defaults apply."""
        config = load(tmp_path, base()).broker
        assert (config.client, config.host, config.port, config.protocol) == (
            "aiomqtt",
            "127.0.0.1",
            1883,
            Protocol.V5,
        )
        assert (config.keepalive, config.receive_maximum, config.tls) == (30, 1000, None)
        assert (config.reconnect.initial_delay, config.reconnect.max_delay) == (0.5, 30.0)

    def test_broker_client_gmqtt_is_accepted_on_mqtt5(self, tmp_path: Path) -> None:
        """client: gmqtt with protocol 5 (the default) loads."""
        assert load(tmp_path, broker(client="gmqtt")).broker.client == "gmqtt"

    def test_broker_client_gmqtt_is_refused_on_311_with_qos1(self, tmp_path: Path) -> None:
        """On 3.1.1 gmqtt acks on receipt: a QoS 1 subscription makes it a config error."""
        data = broker(client="gmqtt", protocol="3.1.1")
        assert error(tmp_path, data) == (
            "broker.client: gmqtt acknowledges messages on receipt on MQTT 3.1.1, before they"
            " are processed (subscriptions[0] has QoS 1): use protocol 5 or client aiomqtt"
        )

    def test_broker_client_gmqtt_on_311_with_only_qos0(self, tmp_path: Path) -> None:
        """QoS 0 has no ack to hold: gmqtt on 3.1.1 is fine."""
        data = broker(client="gmqtt", protocol="3.1.1")
        data["subscriptions"][0]["qos"] = 0
        assert load(tmp_path, data).broker.client == "gmqtt"

    def test_broker_client_gmqtt_not_installed(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Without the gmqtt extra, the error says how to install it."""
        real = importlib.util.find_spec

        def find_spec(name: str, package: str | None = None) -> Any:
            return None if name == "gmqtt" else real(name, package)

        monkeypatch.setattr(importlib.util, "find_spec", find_spec)
        assert error(tmp_path, broker(client="gmqtt")) == (
            "broker.client: gmqtt is not installed: pip install 'mqtt-collector[gmqtt]'"
        )

    def test_broker_client_refuses_an_unknown_library(self, tmp_path: Path) -> None:
        """Any other client lists what is allowed."""
        assert error(tmp_path, broker(client="paho")) == (
            "broker.client: must be 'aiomqtt' or 'gmqtt', got 'paho'"
        )

    def test_broker_refuses_an_unknown_key(self, tmp_path: Path) -> None:
        """A misspelt key is an error."""
        assert error(tmp_path, broker(prot=5)) == "broker.prot: unknown key"

    @pytest.mark.parametrize(("port", "message"), [(0, "at least 1"), (65536, "at most 65535")])
    def test_broker_port_out_of_range(self, tmp_path: Path, port: int, message: str) -> None:
        """The port must be 1..65535."""
        assert error(tmp_path, broker(port=port)) == f"broker.port: must be {message}, got {port}"

    def test_broker_port_not_a_number(self, tmp_path: Path) -> None:
        """A port that is not an integer names the value."""
        assert error(tmp_path, broker(port="mqtt")) == (
            "broker.port: must be an integer, got 'mqtt'"
        )

    def test_broker_port_stays_1883_with_tls(self, tmp_path: Path) -> None:
        """TLS does not change the port by itself."""
        config = load(tmp_path, broker(tls={}))
        assert config.broker.port == 1883

    def test_broker_host_must_not_be_empty(self, tmp_path: Path) -> None:
        """An empty host is refused."""
        assert error(tmp_path, broker(host="")) == "broker.host: must not be empty"

    @pytest.mark.parametrize(
        "host",
        [
            "127.0.0.1",
            "::1",
            "fe80::1%eth0",
            "broker",
            "mqtt.example.com",
            "mqtt.example.com.",
            "my_broker-1",
            "bücher.example",
            f"{'a' * 63}.example",
            ".".join(["a" * 63] * 3 + ["b" * 61]),
        ],
        ids=[
            "ipv4",
            "ipv6",
            "ipv6-zone",
            "plain",
            "dotted",
            "absolute",
            "underscore",
            "idna",
            "label-63",
            "name-253",
        ],
    )
    def test_broker_host_accepts(self, tmp_path: Path, host: str) -> None:
        """IP addresses, plain and dotted names, and names that encode with IDNA are hosts."""
        assert load(tmp_path, broker(host=host)).broker.host == host

    @pytest.mark.parametrize(
        ("host", "fault"),
        [
            ("mqtt..example.com", "it has an empty label"),
            (".example.com", "it has an empty label"),
            ("example.com..", "it has an empty label"),
            (f"{'a' * 64}.com", f"label '{'a' * 59}... is longer than 63 characters"),
            (
                ".".join(["a" * 63] * 3 + ["b" * 62]),
                "it is longer than 253 characters",
            ),
            (
                "\u05d0a.example",
                "label '\u05d0a' cannot be encoded with IDNA (Violation of BIDI requirement 2)",
            ),
            (
                "mqtt broker",
                "label 'mqtt broker' holds a character other than letters, digits, '-', '_'",
            ),
            ("mqtt://broker", "give the host alone, not a URL"),
            ("broker:1883", "give the port as broker.port"),
            ("[::1]", "write an IPv6 address without brackets"),
        ],
        ids=[
            "empty-label",
            "leading-dot",
            "two-trailing-dots",
            "label-64",
            "name-254",
            "bad-idna",
            "space",
            "url",
            "port",
            "brackets",
        ],
    )
    def test_broker_host_refuses(self, tmp_path: Path, host: str, fault: str) -> None:
        """A host no connection could be made to is refused at load, saying why."""
        shown = repr(host) if len(repr(host)) <= 60 else repr(host)[:60] + "..."
        assert error(tmp_path, broker(host=host)) == (
            f"broker.host: {shown} is not a valid host name or IP address: {fault}"
        )

    @pytest.mark.parametrize(
        ("given", "expected"), [(5, Protocol.V5), ("5", Protocol.V5), ("3.1.1", Protocol.V311)]
    )
    def test_broker_protocol_accepts(self, tmp_path: Path, given: object, expected: Any) -> None:
        """5 (number or string) and 3.1.1 are the protocol versions."""
        assert load(tmp_path, broker(protocol=given)).broker.protocol is expected

    @pytest.mark.parametrize(("given", "shown"), [(3.11, "3.11"), (4, "4"), ("v5", "'v5'")])
    def test_broker_protocol_refuses(self, tmp_path: Path, given: object, shown: str) -> None:
        """Anything else lists the allowed versions."""
        assert error(tmp_path, broker(protocol=given)) == (
            f"broker.protocol: must be 5 or 3.1.1, got {shown}"
        )

    @pytest.mark.parametrize("key", ["keepalive", "receive_maximum"])
    def test_broker_bounded_integers(self, tmp_path: Path, key: str) -> None:
        """The keepalive and receive_maximum must be 1..65535."""
        assert error(tmp_path, broker(**{key: 0})) == f"broker.{key}: must be at least 1, got 0"

    @pytest.mark.parametrize("key", ["port", "keepalive", "receive_maximum"])
    def test_broker_two_byte_integers_above_65535(self, tmp_path: Path, key: str) -> None:
        """The port, keepalive and receive_maximum are two-byte fields: 65536 is refused."""
        assert error(tmp_path, broker(**{key: 65536})) == (
            f"broker.{key}: must be at most 65535, got 65536"
        )

    @pytest.mark.parametrize("value", [1, 65535])
    @pytest.mark.parametrize("key", ["port", "keepalive", "receive_maximum"])
    def test_broker_two_byte_integers_edges_accepted(
        self, tmp_path: Path, key: str, value: int
    ) -> None:
        """1 and 65535 are both accepted for the port, keepalive and receive_maximum."""
        assert getattr(load(tmp_path, broker(**{key: value})).broker, key) == value

    def test_broker_reconnect_max_below_initial(self, tmp_path: Path) -> None:
        """max_delay must not be below initial_delay."""
        data = broker(reconnect={"initial_delay": 2, "max_delay": 1.5})
        assert error(tmp_path, data) == (
            "broker.reconnect: max_delay (1.5) is less than initial_delay (2)"
        )

    def test_broker_reconnect_initial_delay_positive(self, tmp_path: Path) -> None:
        """initial_delay must be greater than 0."""
        assert error(tmp_path, broker(reconnect={"initial_delay": 0})) == (
            "broker.reconnect.initial_delay: must be greater than 0, got 0"
        )


class TestSession:
    """client_id and session."""

    def test_broker_client_id_is_generated(self, tmp_path: Path) -> None:
        """Without client_id, one is made from the host name and 8 hex digits."""
        client_id = load(tmp_path, base()).broker.client_id
        pattern = rf"mqtt-collector-{re.escape(socket.gethostname())}-[0-9a-f]{{8}}"
        assert re.fullmatch(pattern, client_id)

    def test_broker_client_id_is_generated_for_an_empty_one(self, tmp_path: Path) -> None:
        """An empty client_id (e.g. ${CLIENT_ID:-}) counts as not given."""
        config = load(tmp_path, broker(client_id="${CLIENT_ID:-}"))
        assert config.broker.client_id.startswith("mqtt-collector-")
        assert config.broker.session.persistent is False

    def test_broker_session_persistent_by_default_with_client_id(self, tmp_path: Path) -> None:
        """A given client_id makes the session persistent unless told otherwise."""
        config = load(tmp_path, broker(client_id="collector-1"))
        assert (config.broker.client_id, config.broker.session.persistent) == ("collector-1", True)

    def test_broker_session_not_persistent_without_client_id(self, tmp_path: Path) -> None:
        """Without client_id the session is clean."""
        assert load(tmp_path, broker(session={"expiry": 10})).broker.session.persistent is False

    def test_broker_session_persistent_can_be_turned_off(self, tmp_path: Path) -> None:
        """persistent: false with a client_id is kept."""
        data = broker(client_id="c", session={"persistent": False})
        assert load(tmp_path, data).broker.session.persistent is False

    def test_broker_session_persistent_needs_client_id(self, tmp_path: Path) -> None:
        """persistent: true without a client_id is an error."""
        assert error(tmp_path, broker(session={"persistent": True})) == (
            "broker.session.persistent: a persistent session needs broker.client_id"
        )

    def test_broker_session_expiry_not_negative(self, tmp_path: Path) -> None:
        """The session expiry must be >= 0."""
        assert error(tmp_path, broker(session={"expiry": -1})) == (
            "broker.session.expiry: must be at least 0, got -1"
        )

    def test_broker_session_expiry_default(self, tmp_path: Path) -> None:
        """The session expiry defaults to a day."""
        assert load(tmp_path, broker(client_id="c")).broker.session.expiry == 86400


class TestStrings:
    """String keys given a YAML number, boolean or date are refused, not converted."""

    @pytest.mark.parametrize(
        ("key", "text", "kind", "example"),
        [
            ("client_id", "0755", "a number", "'0123'"),
            ("client_id", "12:30", "a number", "'0123'"),
            ("client_id", "0x1F", "a number", "'0123'"),
            ("client_id", "1.5", "a number", "'0123'"),
            ("username", "yes", "a boolean", "'yes'"),
            ("username", "2024-01-01", "a date", "'2024-01-01'"),
            ("host", "10", "a number", "'0123'"),
        ],
    )
    def test_broker_string_key_refuses_other_scalars(
        self, tmp_path: Path, key: str, text: str, kind: str, example: str
    ) -> None:
        """The error says to quote the value and why YAML read it otherwise."""
        assert error(tmp_path, f"broker:\n  {key}: {text}\n" + _ROUTES) == (
            f"broker.{key}: must be a string; quote it ({example} in YAML is read as {kind})"
        )

    def test_broker_password_file_number_refused(self, tmp_path: Path) -> None:
        """A path YAML reads as a number is refused the same way."""
        assert error(tmp_path, "broker:\n  password_file: 0123\n" + _ROUTES) == (
            "broker.password_file: must be a string; quote it ('0123' in YAML is read as a number)"
        )

    def test_broker_quoted_client_id_kept(self, tmp_path: Path) -> None:
        """A quoted ``'0755'`` is the client id as written."""
        assert load(tmp_path, "broker:\n  client_id: '0755'\n" + _ROUTES).broker.client_id == (
            "0755"
        )

    def test_broker_client_id_from_environment_digits(self, tmp_path: Path) -> None:
        """A ``${VAR}`` client id of digits stays the string the variable holds."""
        text = "broker:\n  client_id: ${ID}\n" + _ROUTES
        assert load(tmp_path, text, {"ID": "0755"}).broker.client_id == "0755"

    def test_broker_string_key_refuses_a_list(self, tmp_path: Path) -> None:
        """A list is not a string either; the message names what it is."""
        assert error(tmp_path, broker(username=["a"])) == (
            "broker.username: must be a string, got a list"
        )


class TestCredentials:
    """username, password, password_file."""

    def test_broker_password_never_printed(self, tmp_path: Path) -> None:
        """The password is a SecretStr: absent from repr and str of the config."""
        config = load(tmp_path, broker(username="u", password="hunter2"))
        assert "hunter2" not in repr(config)
        assert "hunter2" not in str(config)
        assert config.broker.password is not None
        assert config.broker.password.get_secret_value() == "hunter2"

    def test_broker_password_number_refused(self, tmp_path: Path) -> None:
        """``password: 0123`` (YAML reads 83) is refused, saying to quote it, never shown."""
        message = error(tmp_path, "broker:\n  password: 0123\n" + _ROUTES)
        assert message == (
            "broker.password: must be a string; quote it ('0123' in YAML is read as a number)"
        )

    def test_broker_quoted_number_password_kept(self, tmp_path: Path) -> None:
        """A quoted ``'0123'`` is the password as written."""
        password = load(tmp_path, "broker:\n  password: '0123'\n" + _ROUTES).broker.password
        assert password is not None
        assert password.get_secret_value() == "0123"

    def test_broker_password_from_environment_digits(self, tmp_path: Path) -> None:
        """A ``${VAR}`` password of digits stays the string the variable holds."""
        text = "broker:\n  password: ${PW}\n" + _ROUTES
        password = load(tmp_path, text, {"PW": "0123"}).broker.password
        assert password is not None
        assert password.get_secret_value() == "0123"

    def test_broker_empty_password_is_none(self, tmp_path: Path) -> None:
        """An empty password (e.g. ${MQTT_PASSWORD:-}) means no password."""
        assert load(tmp_path, broker(password="${MQTT_PASSWORD:-}")).broker.password is None

    def test_broker_password_file_is_read(self, tmp_path: Path) -> None:
        """password_file is read at load, one trailing newline dropped."""
        (tmp_path / "password").write_text("s3cret\n\n", encoding="utf-8")
        config = load(tmp_path, broker(password_file=str(tmp_path / "password")))
        assert config.broker.password is not None
        assert config.broker.password.get_secret_value() == "s3cret\n"

    @pytest.mark.parametrize(
        ("content", "password"),
        [
            (b"s3cret", "s3cret"),
            (b"s3cret\n", "s3cret"),
            (b"s3cret\n\n", "s3cret\n"),
            (b"s3cret\r\n", "s3cret"),
            (b" s3 cret\t", " s3 cret\t"),
            (b"s3\ncret", "s3\ncret"),
        ],
        ids=["no-newline", "newline", "two-newlines", "crlf", "spaces", "inner-newline"],
    )
    def test_broker_password_file_content(
        self, tmp_path: Path, content: bytes, password: str
    ) -> None:
        """The whole content is the password, less one trailing newline; nothing else is cut."""
        (tmp_path / "password").write_bytes(content)
        config = load(tmp_path, broker(password_file=str(tmp_path / "password")))
        assert config.broker.password is not None
        assert config.broker.password.get_secret_value() == password

    def test_broker_password_file_crlf_is_one_newline(self, tmp_path: Path) -> None:
        """A trailing CRLF counts as one newline."""
        (tmp_path / "password").write_bytes(b"s3cret\r\n")
        config = load(tmp_path, broker(password_file=str(tmp_path / "password")))
        assert config.broker.password is not None
        assert config.broker.password.get_secret_value() == "s3cret"

    def test_broker_password_and_password_file_together(self, tmp_path: Path) -> None:
        """Giving both is an error."""
        (tmp_path / "password").write_text("a")
        data = broker(password="b", password_file=str(tmp_path / "password"))
        assert error(tmp_path, data) == (
            "broker.password_file: give either password or password_file, not both"
        )

    def test_broker_password_file_missing(self, tmp_path: Path) -> None:
        """An unreadable password file names the reason."""
        missing = tmp_path / "nope"
        assert error(tmp_path, broker(password_file=str(missing))) == (
            f"broker.password_file: cannot read: [Errno 2] No such file or directory: '{missing}'"
        )


class TestTLS:
    """broker.tls."""

    def test_broker_tls_files_are_checked(self, tmp_path: Path) -> None:
        """A CA file that does not exist is an error naming it."""
        missing = str(tmp_path / "ca.pem")
        assert error(tmp_path, broker(tls={"ca_file": missing})) == (
            f"broker.tls.ca_file: no such file: '{missing}'"
        )

    def test_broker_tls_cert_needs_key(self, tmp_path: Path) -> None:
        """cert_file without key_file is an error."""
        (tmp_path / "client.pem").write_text("")
        data = broker(tls={"cert_file": str(tmp_path / "client.pem")})
        assert error(tmp_path, data) == "broker.tls: cert_file and key_file must be given together"

    def test_broker_tls_reads_every_key(self, tmp_path: Path) -> None:
        """Existing files and insecure are kept."""
        for name in ("ca.pem", "client.pem", "client.key"):
            (tmp_path / name).write_text("")
        tls = {
            "ca_file": str(tmp_path / "ca.pem"),
            "cert_file": str(tmp_path / "client.pem"),
            "key_file": str(tmp_path / "client.key"),
            "insecure": True,
        }
        config = load(tmp_path, broker(tls=tls)).broker.tls
        assert config is not None
        assert (config.ca_file, config.key_file, config.insecure) == (
            tmp_path / "ca.pem",
            tmp_path / "client.key",
            True,
        )

    def test_broker_tls_empty_section_turns_tls_on(self, tmp_path: Path) -> None:
        """An empty tls section means TLS with the system CAs and the host name checked."""
        config = load(tmp_path, broker(tls={})).broker.tls
        assert config is not None
        assert (config.ca_file, config.insecure) == (None, False)
