"""The ``broker:`` section of the configuration: where and how to connect."""

from __future__ import annotations

import enum
import importlib.util
import ipaddress
import re
import secrets
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, FilePath, SecretStr, Strict, field_validator, model_validator

from mqtt_collector._config.base import ConfigModel, LocatedError, NonEmptyText, Text, show

if TYPE_CHECKING:
    from pydantic import ValidatorFunctionWrapHandler

__all__ = ["BrokerConfig", "Protocol", "ReconnectConfig", "SessionConfig", "TLSConfig"]

_MAX_NAME = 253
_MAX_LABEL = 63
# What a label may hold once IDNA-encoded: DNS's letters, digits and '-', and the '_' that
# container and /etc/hosts names use.
_LABEL = re.compile(r"[A-Za-z0-9_-]+")


class Protocol(enum.Enum):
    """The MQTT protocol version spoken to the broker."""

    V5 = "5"
    V311 = "3.1.1"


class TLSConfig(ConfigModel):
    """``broker.tls``: its presence turns TLS on; every file must exist at load.

    Attributes:
        ca_file: CA bundle to verify the broker with; the system's CAs when None.
        cert_file: client certificate, for mutual TLS (with ``key_file``).
        key_file: the client certificate's private key.
        key_password: the passphrase of an encrypted ``key_file`` (from ``key_password`` or
            read from ``key_password_file``); never logged or printed.
        key_password_file: the file the passphrase was read from, if any.
        insecure: skip the check that the broker's certificate names ``broker.host``.
    """

    ca_file: FilePath | None = None
    cert_file: FilePath | None = None
    key_file: FilePath | None = None
    key_password: Annotated[SecretStr, Strict()] | None = None
    key_password_file: FilePath | None = None
    insecure: bool = False

    @field_validator("key_password", "key_password_file", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        """``${KEY_PASSWORD:-}`` gives "", which means no passphrase."""
        return None if value == "" else value

    @model_validator(mode="after")
    def _cert_and_key_together(self) -> TLSConfig:
        """A client certificate is useless without its key, and the reverse."""
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file must be given together")
        if self.key_password_file is None:
            return self
        if self.key_password is not None:
            raise LocatedError(
                ("key_password_file",), "give either key_password or key_password_file, not both"
            )
        password = _read_password(self.key_password_file, key="key_password_file")
        return self.model_copy(update={"key_password": password})


class SessionConfig(ConfigModel):
    """``broker.session``: whether the broker keeps our subscriptions and messages while away.

    Attributes:
        persistent: keep the session (clean start off); defaults to whether
            ``broker.client_id`` is given, and needs it.
        expiry: seconds the broker keeps the session after a disconnect (MQTT 5).
    """

    persistent: bool = False
    expiry: int = Field(default=86400, ge=0)


class ReconnectConfig(ConfigModel):
    """``broker.reconnect``: the backoff between connection attempts, doubling each time.

    Attributes:
        initial_delay: seconds before the first retry.
        max_delay: the longest wait between retries, in seconds.
    """

    initial_delay: float = Field(default=0.5, gt=0)
    max_delay: float = 30.0

    @model_validator(mode="after")
    def _max_not_below_initial(self) -> ReconnectConfig:
        """The delay only grows, so its bound must not be below its start."""
        if self.max_delay < self.initial_delay:
            raise ValueError(
                f"max_delay ({self.max_delay:g}) is less than initial_delay"
                f" ({self.initial_delay:g})"
            )
        return self


def generated_client_id() -> str:
    """Return a client id unique to this host and run: ``mqtt-collector-<host>-<8 hex>``."""
    return f"mqtt-collector-{socket.gethostname()}-{secrets.token_hex(4)}"


class BrokerConfig(ConfigModel):
    """``broker:``: the MQTT connection.

    Attributes:
        client: the MQTT client library, ``aiomqtt`` or ``gmqtt`` (faster; MQTT 5 only for
            QoS 1 subscriptions: on 3.1.1 it acknowledges on receipt).
        host: the broker's host name or address.
        port: the broker's port (8883 is not chosen by itself when TLS is on).
        client_id: the id given, or a generated ``mqtt-collector-<hostname>-<8 hex>``.
        protocol: MQTT 5 or 3.1.1.
        username: the user name, if the broker wants one (an empty one is None).
        password: the password (from ``password`` or read from ``password_file``); an empty
            ``password`` is None.
        password_file: the file the password was read from, if any.
        tls: TLS settings, or None for a plain TCP connection.
        keepalive: seconds between keep-alive pings.
        session: the session settings.
        reconnect: the reconnect backoff.
        receive_maximum: how many unacknowledged QoS 1/2 messages the broker may have in
            flight to us (MQTT 5 Receive Maximum).
    """

    client: Literal["aiomqtt", "gmqtt"] = "aiomqtt"
    host: NonEmptyText = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    client_id: Text = ""
    protocol: Protocol = Protocol.V5
    username: Text | None = None
    password: Annotated[SecretStr, Strict()] | None = None
    password_file: Path | None = None
    tls: TLSConfig | None = None
    keepalive: int = Field(default=30, ge=1, le=65535)
    session: SessionConfig = Field(default_factory=SessionConfig)
    reconnect: ReconnectConfig = Field(default_factory=ReconnectConfig)
    receive_maximum: int = Field(default=1000, ge=1, le=65535)

    @field_validator("client")
    @classmethod
    def _installed_client(cls, value: str) -> str:
        """The gmqtt extra may be missing: say how to install it, rather than fail at start."""
        if value == "gmqtt" and importlib.util.find_spec("gmqtt") is None:
            raise ValueError("gmqtt is not installed: pip install 'mqtt-collector[gmqtt]'")
        return value

    @field_validator("host")
    @classmethod
    def _valid_host(cls, value: str) -> str:
        """Refuse a host no connection can be made to, rather than fail at every connect."""
        _check_host(value)
        return value

    @field_validator("username", "password", "password_file", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        """``${MQTT_PASSWORD:-}`` gives "", which means no password, not an empty one."""
        return None if value == "" else value

    @field_validator("protocol", mode="plain")
    @classmethod
    def _protocol(cls, value: object) -> Protocol:
        """Accept 5 (number or string) and "3.1.1"; YAML reads ``3.1.1`` as a string."""
        if isinstance(value, Protocol):
            return value
        if value == 5 and not isinstance(value, bool | float):  # noqa: PLR2004 - the version
            return Protocol.V5
        if isinstance(value, str) and value.strip() in {"5", "3.1.1"}:
            return Protocol(value.strip())
        raise ValueError(f"must be 5 or 3.1.1, got {show(value)}")

    @model_validator(mode="wrap")
    @classmethod
    def _resolve(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> BrokerConfig:
        """Fill the defaults that depend on other keys, and read ``password_file``."""
        given = False
        if isinstance(data, dict):
            data = dict(data)
            given = data.get("client_id") not in {None, ""}
            if not given:
                data["client_id"] = generated_client_id()
            session = data.get("session")
            if session is None:
                data["session"] = {"persistent": given}
            elif isinstance(session, dict) and session.get("persistent") is None:
                data["session"] = {**session, "persistent": given}
        model: BrokerConfig = handler(data)
        if model.session.persistent and not given:
            raise LocatedError(
                ("session", "persistent"), "a persistent session needs broker.client_id"
            )
        if model.password_file is None:
            return model
        if model.password is not None:
            raise LocatedError(
                ("password_file",), "give either password or password_file, not both"
            )
        return model.model_copy(update={"password": _read_password(model.password_file)})


def _check_host(host: str) -> None:
    """Check that ``host`` is an IP address or a host name that can be looked up.

    A name may end in one dot; its labels, IDNA-encoded, must be 1 to 63 characters of letters,
    digits, ``-`` and ``_``, and the whole at most 253 characters.

    Raises:
        ValueError: saying what is wrong, e.g. an empty label in ``mqtt..example.com``.
    """
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return
    fault = _name_fault(host)
    if fault is not None:
        raise ValueError(f"{show(host)} is not a valid host name or IP address: {fault}")


def _name_fault(host: str) -> str | None:
    """Say what is wrong with a host name that is not an IP address, or None if nothing."""
    name = host.removesuffix(".")
    fault = _shape_fault(host) or next(filter(None, map(_label_fault, name.split("."))), None)
    if fault is None and len(name.encode("idna")) > _MAX_NAME:
        fault = f"it is longer than {_MAX_NAME} characters"
    return fault


def _shape_fault(host: str) -> str | None:
    """Name the common mistakes of writing more than a host: a URL, brackets, a port."""
    if "://" in host:
        return "give the host alone, not a URL"
    if host.startswith("[") and host.endswith("]"):
        return "write an IPv6 address without brackets"
    if ":" in host:
        return "give the port as broker.port"
    return None


def _label_fault(label: str) -> str | None:
    """Say what is wrong with one label of a host name, or None if nothing."""
    if not label:
        return "it has an empty label"
    try:
        encoded = label if label.isascii() else label.encode("idna").decode("ascii")
    except UnicodeError as exc:
        # Python 3.13 raises UnicodeEncodeError with a reason; earlier ones chain the reason.
        reason = getattr(exc, "reason", None) or exc.__cause__ or exc
        return f"label {show(label)} cannot be encoded with IDNA ({reason})"
    if len(encoded) > _MAX_LABEL:
        return f"label {show(label)} is longer than {_MAX_LABEL} characters"
    if not _LABEL.fullmatch(encoded):
        return f"label {show(label)} holds a character other than letters, digits, '-', '_'"
    return None


def _read_password(path: Path, *, key: str = "password_file") -> SecretStr:
    """Read a password file (the ``key`` setting), dropping one trailing newline."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LocatedError((key,), f"cannot read: {exc}") from None
    for newline in ("\r\n", "\n"):
        if text.endswith(newline):
            return SecretStr(text[: -len(newline)])
    return SecretStr(text)
