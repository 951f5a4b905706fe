"""The daemon's configuration: the YAML contract as immutable models, and :func:`load_config`.

This is the only module that reads YAML. A file is read, parsed, its ``${VAR}`` references
replaced, and validated in one go; every dotted path is imported here, so a bad file is refused
before anything connects, with one line naming the file and the key path.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import Field, PrivateAttr, ValidationError, field_validator, model_validator

from mqtt_collector._config.base import ConfigModel, LocatedError, format_errors, format_loc
from mqtt_collector._config.broker import (
    BrokerConfig,
    Protocol,
    ReconnectConfig,
    SessionConfig,
    TLSConfig,
)
from mqtt_collector._config.envsubst import SubstitutionError, substitute
from mqtt_collector._config.imports import add_import_dir
from mqtt_collector._config.routes import (
    CollectorConfig,
    DeadLetterConfig,
    RetryConfig,
    Subscription,
)
from mqtt_collector._config.sections import (
    HealthConfig,
    ListenAddress,
    LoggingConfig,
    MetricsConfig,
    QueueConfig,
)
from mqtt_collector._exceptions import ConfigError

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "BrokerConfig",
    "CollectorConfig",
    "Config",
    "DeadLetterConfig",
    "HealthConfig",
    "ListenAddress",
    "LoggingConfig",
    "MetricsConfig",
    "Protocol",
    "QueueConfig",
    "ReconnectConfig",
    "RetryConfig",
    "SessionConfig",
    "Subscription",
    "TLSConfig",
    "load_config",
]


class Config(ConfigModel):
    """A whole configuration file, validated; build it with :func:`load_config`.

    Attributes:
        broker: the MQTT connection.
        subscriptions: the filters subscribed to and the Payload topics they feed.
        queue: the collector queue.
        collectors: the collectors, by unique key.
        logging: the daemon's logging.
        metrics: the metrics endpoint.
        health: the status file ``mqtt-collector health`` reads.
    """

    broker: BrokerConfig = Field(default_factory=BrokerConfig)
    subscriptions: tuple[Subscription, ...] = Field(min_length=1)
    queue: QueueConfig = Field(default_factory=QueueConfig)
    collectors: tuple[CollectorConfig, ...] = Field(min_length=1)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    health: HealthConfig = Field(default_factory=HealthConfig)

    _path: str = PrivateAttr(default="")
    _warnings: tuple[str, ...] = PrivateAttr(default=())

    @field_validator("collectors")
    @classmethod
    def _unique_keys(cls, collectors: tuple[CollectorConfig, ...]) -> tuple[CollectorConfig, ...]:
        seen: dict[str, int] = {}
        for index, collector in enumerate(collectors):
            first = seen.setdefault(collector.key, index)
            if first != index:
                raise LocatedError(
                    (index, "key"),
                    f"duplicate key {collector.key!r} (also collectors[{first}].key)",
                )
        return collectors

    @model_validator(mode="after")
    def _gmqtt_acks_after_processing(self) -> Config:
        """Refuse gmqtt on 3.1.1 with QoS 1: only on MQTT 5 can it ack after processing."""
        if self.broker.client == "gmqtt" and self.broker.protocol is not Protocol.V5:
            for index, subscription in enumerate(self.subscriptions):
                if subscription.qos >= 1:
                    raise LocatedError(
                        ("broker", "client"),
                        f"gmqtt acknowledges messages on receipt on MQTT 3.1.1, before they"
                        f" are processed (subscriptions[{index}] has QoS {subscription.qos}):"
                        f" use protocol 5 or client aiomqtt",
                    )
        return self

    @property
    def path(self) -> str:
        """The configuration file, as it was named to :func:`load_config`."""
        return self._path

    @property
    def warnings(self) -> tuple[str, ...]:
        """One line per likely mistake that is not an error, e.g. a topic nothing produces."""
        return self._warnings

    def unreachable(self) -> list[tuple[tuple[str | int, ...], str]]:
        """Find the routes that cannot carry anything, as (key path, message) pairs.

        A collector topic that no subscription template can produce will never get a
        payload; a subscription none of whose Payload topics a collector listens to feeds
        nothing.
        """
        found: list[tuple[tuple[str | int, ...], str]] = []
        fed: set[int] = set()
        for c_index, collector in enumerate(self.collectors):
            for t_index, topic in enumerate(collector.topics):
                producers = {
                    s_index
                    for s_index, subscription in enumerate(self.subscriptions)
                    for template in subscription.templates
                    if template.could_produce(topic, filter_=subscription.matcher)
                }
                fed |= producers
                if not producers:
                    found.append(
                        (
                            ("collectors", c_index, "topics", t_index),
                            f"topic {topic!r} is produced by no subscription",
                        )
                    )
        found.extend(
            (("subscriptions", s_index), f"messages on {subscription.filter!r} reach no collector")
            for s_index, subscription in enumerate(self.subscriptions)
            if s_index not in fed
        )
        return found


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.safe_load``'s loader, except that a key given twice is an error, not a shadow."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:  # noqa: FBT001, FBT002 - PyYAML's signature
        """Build a mapping, refusing duplicate keys (the later one would silently win)."""
        seen: set[object] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, list | dict):
                # Unhashable keys are reported by the base class with its own message.
                continue
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_config(
    path: str | os.PathLike[str], *, environ: Mapping[str, str] | None = None
) -> Config:
    """Read, substitute, validate and resolve a configuration file.

    Args:
        path: the YAML file.
        environ: where ``${VAR}`` references are looked up; ``os.environ`` by default.

    Returns:
        The configuration, with ``path`` and ``warnings`` set.

    Raises:
        ConfigError: with one line ``<path>: <key.path>: <message>`` for anything wrong.
    """
    name = os.fspath(path)
    try:
        with open(name, encoding="utf-8") as stream:  # noqa: PTH123 - the name as given
            text = stream.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise _error(name, f"cannot read: {exc}") from None
    try:
        tree = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader
    except yaml.MarkedYAMLError as exc:
        raise _yaml_error(name, exc) from None
    except yaml.YAMLError as exc:
        raise _error(name, f"invalid YAML: {exc}") from None
    if tree is None:
        raise _error(name, "the file is empty; it needs at least subscriptions and collectors")
    if not isinstance(tree, dict):
        raise _error(name, f"the top level must be a mapping of sections, got {_kind(tree)}")
    try:
        tree = substitute(tree, os.environ if environ is None else environ)
    except SubstitutionError as exc:
        raise _error(name, f"{format_loc(exc.loc)}: {exc}") from None
    # Collector modules beside the file are importable, after everything else on sys.path.
    add_import_dir(os.path.dirname(os.path.abspath(name)))  # noqa: PTH100, PTH120 - as named
    try:
        config = Config.model_validate(tree)
    except ValidationError as exc:
        raise _error(name, format_errors(exc)) from None
    config._path = name  # noqa: SLF001 - set once, here, before anyone sees it
    config._warnings = tuple(  # noqa: SLF001
        f"{name}: {format_loc(loc)}: {message}" for loc, message in config.unreachable()
    )
    return config


def _error(name: str, message: str) -> ConfigError:
    """A ConfigError whose message is one line starting with the file name."""
    return ConfigError(" ".join(f"{name}: {message}".split("\n")))


def _yaml_error(name: str, exc: yaml.MarkedYAMLError) -> ConfigError:
    """``file:LINE:COL: invalid YAML: problem``, with 1-based line and column."""
    mark = exc.problem_mark or exc.context_mark
    problem = exc.problem or exc.context or "cannot be parsed"
    where = name if mark is None else f"{name}:{mark.line + 1}:{mark.column + 1}"
    return ConfigError(" ".join(f"{where}: invalid YAML: {problem}".split("\n")))


def _kind(value: object) -> str:
    """Name the kind of a YAML value."""
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    return type(value).__name__
