"""The ``subscriptions:`` and ``collectors:`` sections: what to receive and where it goes."""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable
from types import MappingProxyType
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import (
    BaseModel,
    Field,
    PlainValidator,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from mqtt_collector._config.base import (
    ConfigModel,
    FrozenMapping,
    LocatedError,
    NonEmptyText,
    PublishQoS,
    SubscribeQoS,
    Text,
    describe,
    show,
)
from mqtt_collector._config.imports import import_object
from mqtt_collector._mqtt.template import TopicTemplate
from mqtt_collector._mqtt.topic import TopicFilter, validate_filter, validate_topic_name

if TYPE_CHECKING:
    from pydantic import ValidatorFunctionWrapHandler
    from pydantic_core import InitErrorDetails

    from mqtt_collector._core.collector import LifecycleManager, Processor

__all__ = ["CollectorConfig", "DeadLetterConfig", "Decoder", "RetryConfig", "Subscription"]

Decoder = Callable[[bytes, str], object]
"""A user's ``decode: package.module:function``: ``decoder(body, topic)`` returns ``data``.

Called synchronously on the receive path, once per message; whatever it raises refuses the
message (logged, counted, acknowledged).
"""

# The decodings built in; anything else must name a user decoder.
_BUILT_IN_DECODES = ("json", "text", "bytes", "msgpack")


class Subscription(ConfigModel):
    """One entry of ``subscriptions:``: an MQTT filter and the Payload topics it feeds.

    Attributes:
        filter: the MQTT topic filter as written (``$share/<group>/...`` accepted).
        qos: the QoS subscribed with.
        decode: how bodies are decoded: ``json``, ``text``, ``bytes``, ``msgpack``, or a user
            decoder's ``"package.module:function"`` (see ``decoder``).
        topics: the Payload topic templates (``{1}``... captures, ``{topic}`` the MQTT topic).
        priority: the Payload priority; None means ``queue.default_priority``.
        share_group: subscribe as ``$share/<share_group>/<filter>`` when set.
        max_body_bytes: bodies larger than this are refused; None for no bound.
    """

    filter: Text
    qos: SubscribeQoS = 1
    decode: Text = "json"
    topics: tuple[Text, ...] = Field(default=("{topic}",), min_length=1)
    priority: int | None = None
    share_group: NonEmptyText | None = None
    max_body_bytes: int | None = Field(default=None, gt=0)

    _matcher: TopicFilter = PrivateAttr()
    _templates: tuple[TopicTemplate, ...] = PrivateAttr()
    _decoder: Decoder | None = PrivateAttr(default=None)

    @field_validator("filter")
    @classmethod
    def _valid_filter(cls, value: str) -> str:
        validate_filter(value)
        return value

    @field_validator("share_group")
    @classmethod
    def _valid_group(cls, value: str | None) -> str | None:
        if value is not None and any(char in value for char in "/+#"):
            raise ValueError(f"must not contain '/', '+' or '#', got {value!r}")
        return value

    @model_validator(mode="after")
    def _compile(self) -> Subscription:
        """Compile the filter and templates once, so the mapper never parses them again.

        The decoding is checked here too: ``msgpack`` needs its package, and a user decoder
        is imported once, so ``check`` refuses what would fail on the first message.
        """
        if self.share_group is not None and self.filter.startswith("$share/"):
            raise LocatedError(("share_group",), "cannot be combined with a $share/ filter")
        try:
            self._decoder = _decoder(self.decode)
        except ValueError as exc:
            raise LocatedError(("decode",), str(exc)) from None
        self._matcher = TopicFilter(self.filter)
        templates = []
        for index, template in enumerate(self.topics):
            try:
                templates.append(TopicTemplate(template, wildcards=self._matcher.wildcards))
            except ValueError as exc:
                raise LocatedError(("topics", index), str(exc)) from None
        self._templates = tuple(templates)
        return self

    @property
    def matcher(self) -> TopicFilter:
        """The compiled filter that MQTT topics are matched against."""
        return self._matcher

    @property
    def templates(self) -> tuple[TopicTemplate, ...]:
        """The compiled Payload topic templates, in the order of ``topics``."""
        return self._templates

    @property
    def decoder(self) -> Decoder | None:
        """The imported user decoder ``decode`` names; None for a built-in decoding."""
        return self._decoder

    @property
    def mqtt_filter(self) -> str:
        """The filter actually subscribed to: ``$share/<share_group>/<filter>`` if shared."""
        if self.share_group is None:
            return self.filter
        return f"$share/{self.share_group}/{self.filter}"


class RetryConfig(ConfigModel):
    """``collectors[i].retry``: how often a processor is tried for one payload.

    Attributes:
        attempts: how many tries in all; 1 means no retry.
        backoff: seconds before the first retry; it doubles after each.
        max_backoff: the longest wait between tries, in seconds.
    """

    attempts: int = Field(default=1, ge=1)
    backoff: float = Field(default=0.5, ge=0)
    max_backoff: float = 30.0

    @model_validator(mode="after")
    def _max_not_below_backoff(self) -> RetryConfig:
        if self.max_backoff < self.backoff:
            raise ValueError(
                f"max_backoff ({self.max_backoff:g}) is less than backoff ({self.backoff:g})"
            )
        return self


class DeadLetterConfig(ConfigModel):
    """``collectors[i].dead_letter``: where a payload goes when its processor finally fails.

    Attributes:
        topic: the MQTT topic the failed message is published to.
        qos: the QoS it is published with.
    """

    topic: Text
    qos: PublishQoS = 1

    @field_validator("topic")
    @classmethod
    def _valid_topic(cls, value: str) -> str:
        validate_topic_name(value)
        return value


def _resolve(path: object) -> object:
    """Import a dotted path, turning any failure into a one-line ValueError."""
    if not isinstance(path, str):
        raise ValueError(  # noqa: TRY004 - pydantic reports ValueError, not TypeError
            f"must be a string 'package.module:attribute', got {show(path)}"
        )
    try:
        return import_object(path)
    except (ImportError, ValueError) as exc:
        raise ValueError(str(exc)) from None


def _is_async_callable(obj: object) -> bool:
    """Whether calling ``obj`` returns a coroutine: an async function or async ``__call__``."""
    if isinstance(obj, type):
        # Calling a class builds an instance, whatever its __call__ is.
        return False
    if inspect.iscoroutinefunction(obj):
        return True
    return inspect.iscoroutinefunction(type(obj).__call__)


def _decoder(decode: str) -> Decoder | None:
    """Check ``decode``; return the user decoder it names (imported), or None if built in.

    Raises:
        ValueError: one line: an unknown word, an import that fails, the ``msgpack`` package
            missing, or something that cannot be called as ``decoder(body, topic)``.
    """
    if decode in _BUILT_IN_DECODES:
        if decode == "msgpack":
            try:
                importlib.import_module("msgpack")
            except ImportError as exc:
                raise ValueError(
                    "msgpack needs the msgpack package, which cannot be imported"
                    f" ({exc}): pip install 'mqtt-collector[msgpack]'"
                ) from None
        return None
    if ":" not in decode:
        raise ValueError(
            "must be 'json', 'text', 'bytes', 'msgpack' or a decoder's"
            f" 'package.module:function', got {show(decode)}"
        )
    found = _resolve(decode)
    if not callable(found):
        raise ValueError(f"{decode!r} is not callable")  # noqa: TRY004 - pydantic wants ValueError
    if _is_async_callable(found):
        raise ValueError(
            f"{decode!r} is an async function; a decoder must be a plain function"
            " (it runs on the receive path, before the message is queued)"
        )
    try:
        signature = inspect.signature(found)
    except (TypeError, ValueError):
        # Some built-ins and extension types tell nothing of their parameters: trust them.
        return found
    try:
        signature.bind(b"", "")
    except TypeError as exc:
        raise ValueError(f"{decode!r} cannot be called as decoder(body, topic): {exc}") from None
    return found


def _processor(path: object) -> object:
    """Import a processor and check that it is an async callable."""
    found = _resolve(path)
    if not _is_async_callable(found):
        raise ValueError(f"{path!r} is not an async function")
    return found


def _lifecycle(path: object) -> object:
    """Import a lifecycle and check that it is callable."""
    found = _resolve(path)
    if not callable(found):
        raise ValueError(f"{path!r} is not callable")  # noqa: TRY004 - pydantic wants ValueError
    return found


if TYPE_CHECKING:
    _Processor = Processor
    _Lifecycle = LifecycleManager
else:
    # The callable types name queue classes only for the type checker; at run time the
    # validator is the whole check.
    _Processor = Annotated[Any, PlainValidator(_processor)]
    _Lifecycle = Annotated[Any, PlainValidator(_lifecycle)]


def _declared_options(found: object, field: str) -> type[BaseModel] | None:
    """The ``Options`` model declared by the module defining ``found``, or None.

    Raises:
        LocatedError: at ``field`` when that module's ``Options`` is not a pydantic model.
    """
    module = sys.modules.get(getattr(found, "__module__", None) or "")
    declared = getattr(module, "Options", None)
    if declared is None:
        return None
    if not (isinstance(declared, type) and issubclass(declared, BaseModel)):
        raise LocatedError(
            (field,), f"'{getattr(module, '__name__', '?')}.Options' is not a pydantic model class"
        )
    return declared


def _collector_options(processor: object, lifecycle: object, options: object) -> BaseModel | None:
    """Validate ``options`` against the collector's declared model; its instance, or None.

    The model is the ``Options`` of the lifecycle's module or, failing that, of the processor's;
    when both declare one they must be the same. The errors come out located under
    ``options``, each worded as the rest of the configuration's.
    """
    declared = [_declared_options(processor, "processor")]
    if lifecycle is not None:
        declared.append(_declared_options(lifecycle, "lifecycle"))
    models = {model for model in declared if model is not None}
    if len(models) > 1:
        raise LocatedError(
            ("lifecycle",),
            "its module and the processor's declare different Options models; a collector has one",
        )
    if not models:
        return None
    [model] = models
    try:
        return model.model_validate({} if options is None else options)
    except ValidationError as exc:
        located: list[InitErrorDetails] = []
        for error in exc.errors(include_url=False):
            loc, message = describe(error)
            located.append(
                {
                    "type": "value_error",
                    "loc": ("options", *loc),
                    "input": error["input"],
                    "ctx": {"error": ValueError(message)},
                }
            )
        # Raised inside a validator, its errors are reported below the collector's own path.
        raise ValidationError.from_exception_data(exc.title, located) from None


class CollectorConfig(ConfigModel):
    """One entry of ``collectors:``: a processor, the topics it takes, and its settings.

    Attributes:
        key: the collector's unique name.
        processor: the imported async processor.
        lifecycle: the imported lifecycle factory, or None.
        topics: the Payload topics it listens to.
        options: read-only settings for the processor, as written (see ``checked_options``).
        timeout: seconds one payload may take before it counts as failed; None for no bound.
        retry: how failed payloads are tried again.
        dead_letter: where finally failed messages are published, or None.
    """

    key: NonEmptyText
    processor: _Processor
    lifecycle: _Lifecycle | None = None
    topics: tuple[NonEmptyText, ...] = Field(min_length=1)
    options: FrozenMapping = Field(default_factory=lambda: MappingProxyType({}))
    timeout: float | None = Field(default=None, gt=0)
    retry: RetryConfig = Field(default_factory=RetryConfig)
    dead_letter: DeadLetterConfig | None = None

    _processor_path: str = PrivateAttr(default="")
    _lifecycle_path: str | None = PrivateAttr(default=None)
    _checked_options: BaseModel | None = PrivateAttr(default=None)

    @model_validator(mode="wrap")
    @classmethod
    def _keep_paths(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> CollectorConfig:
        """Remember the dotted paths as written, and check the options the collector declares."""
        model: CollectorConfig = handler(data)
        if isinstance(data, dict):
            model._processor_path = str(data["processor"])
            lifecycle = data.get("lifecycle")
            model._lifecycle_path = None if lifecycle is None else str(lifecycle)
            # Validated as YAML gave them (not the frozen copy), as the model declares.
            model._checked_options = _collector_options(
                model.processor, model.lifecycle, data.get("options")
            )
        return model

    @property
    def checked_options(self) -> Any:
        """What the collector finds as ``ctx.options``.

        The instance of the ``Options`` model its lifecycle's or processor's module declares,
        validated at load; the read-only ``options`` mapping when it declares none.
        """
        return self.options if self._checked_options is None else self._checked_options

    @property
    def processor_path(self) -> str:
        """The processor's ``"package.module:attribute"`` as written."""
        return self._processor_path

    @property
    def lifecycle_path(self) -> str | None:
        """The lifecycle's ``"package.module:attribute"`` as written, or None."""
        return self._lifecycle_path
