"""A collector that POSTs messages in batches to an HTTP endpoint, as JSON or NDJSON.

Use it as (``pip install 'mqtt-collector[http]'``, which brings httpx)::

    processor: mqtt_collector.collectors.http:post
    lifecycle: mqtt_collector.collectors.http:open_client
    options:
      url: https://ingest.example.com/readings
      headers: {Authorization: "Bearer ${INGEST_TOKEN}"}

Each message is one JSON object, the same one the jsonl collector writes a line of: ``topic``,
``data``, ``qos``, ``retain``, ``captures``, ``received_at`` (Unix seconds) and
``subscription``. A ``bytes`` body (``decode: bytes``), or a decoded value strict JSON cannot
hold (NaN), goes as the base64 of the raw body with ``"data_encoding": "base64"``. A batch is
one POST: a JSON array of those objects (``Content-Type: application/json``) or one object per
line (``format: ndjson``, ``Content-Type: application/x-ndjson``).

Batches are group commits (``mqtt_collector.GroupCommit``): while one POST is under way the
messages that arrive gather, and the next POST takes them all (up to ``batch_size``). Each
message's processor returns only once the POST holding it has been answered: ``Ok`` for any
2xx, an ``Error`` (``HttpPostError``) for every message of the batch on any other status, a
connection failure or the timeout, so the retry policy and dead letter apply per message and,
with QoS 1, nothing is acknowledged before the endpoint took it. A batch is at most
``queue.max_consumers`` long (each waiting message holds a consumer). Redirects are not
followed (a 3xx is an Error). Delivery is at least once: a batch the endpoint took but whose
answer was lost is sent again, so the endpoint should tolerate duplicates.

One HTTP client (a pool of keep-alive connections) is opened with the lifecycle and closed at
its end, after the messages still waiting are posted. Header values are never logged and never
shown in a repr or an error; errors show the URL without its query and user info, so put
secrets in ``headers``, not in the URL.

Options:
    url: the ``http://`` or ``https://`` URL to POST to (required).
    format: ``json`` (default: one JSON array per batch) or ``ndjson`` (one object per line).
    headers: extra request headers, name to value, e.g. a token through ``${ENV}``. They may
        replace ``Content-Type``.
    timeout: seconds one POST may take in all, from connecting to the end of the answer.
        Default 10.
    batch_size: the most messages one POST carries (default 500; 1: a POST per message).
    batch_delay: under load (a POST under way), seconds the next POST may wait for more
        messages after the first one of its batch arrives, never longer; a message that finds
        no POST under way is posted at once. Default 0.01.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import Field, PlainValidator, SecretStr

from mqtt_collector import (
    CollectorError,
    Context,
    Error,
    GroupCommit,
    Message,
    Payload,
    Result,
)
from mqtt_collector.collectors import (
    _BatchDelay,
    _BatchSize,
    _choice,
    _needs_lifecycle,
    _Options,
    _read_options,
    _seconds,
    _string,
)
from mqtt_collector.collectors.jsonl import encode

try:
    import httpx
except ImportError as exc:  # pragma: no cover - the extra is installed where tests run
    raise ImportError(
        "mqtt_collector.collectors.http needs httpx: pip install 'mqtt-collector[http]'"
    ) from exc

__all__ = ["HttpPostError", "Options", "open_client", "post"]

# RFC 9110 token characters, the only ones a header name may have.
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_CONTENT_TYPES = {"json": "application/json", "ndjson": "application/x-ndjson"}


class HttpPostError(CollectorError):
    """A POST failed: a status other than 2xx (``status``), a connection failure or a timeout.

    Attributes:
        status: the HTTP status the endpoint answered, or None when there was no answer.
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        """Build the error; ``message`` never holds a header value."""
        super().__init__(message)
        self.status = status


def _url(value: object) -> str:
    """Check the ``url`` option: an absolute http or https URL."""
    url = _string(value)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    return url


def _headers(value: object) -> Mapping[str, SecretStr]:
    """Check the ``headers`` option: names to string values, the values kept secret.

    No message here shows a value: it may be a token.
    """
    if not isinstance(value, Mapping):
        raise ValueError(  # noqa: TRY004 - pydantic wants ValueError
            f"must be a mapping of header names to values, got {type(value).__name__}"
        )
    headers: dict[str, SecretStr] = {}
    for name, text in value.items():
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not a header name (letters, digits, - and such)")
        if isinstance(text, SecretStr):
            text = text.get_secret_value()  # noqa: PLW2901 - a checked model passed again
        if not isinstance(text, str):
            raise ValueError(  # noqa: TRY004 - pydantic wants ValueError
                f"header {name!r}: the value must be a string (quote it), got {type(text).__name__}"
            )
        if any(char in text for char in "\r\n\0"):
            raise ValueError(f"header {name!r}: the value must not hold a line break or NUL")
        headers[name] = SecretStr(text)
    return headers


class Options(_Options):
    """The http collector's options, as described in the module docstring."""

    url: Annotated[str, PlainValidator(_url)]
    format: Annotated[str, _choice("json", "ndjson")] = "json"
    headers: Annotated[Mapping[str, SecretStr], PlainValidator(_headers)] = Field(
        default_factory=dict
    )
    timeout: Annotated[float, _seconds(zero=False)] = 10.0
    batch_size: _BatchSize = 500
    batch_delay: _BatchDelay = 0.01


@dataclass(frozen=True, slots=True, kw_only=True)
class _Poster:
    """Posts one http collector's batches (the ``write`` of its GroupCommit)."""

    client: httpx.AsyncClient = field(repr=False)
    url: str = field(repr=False)
    shown_url: str
    format: str
    timeout: float

    async def send(self, lines: list[bytes]) -> None:
        """POST ``lines`` (JSON objects, each ending in a newline) as one body, or raise."""
        if self.format == "ndjson":
            body = b"".join(lines)
        else:
            body = b"[" + b",".join(line[:-1] for line in lines) + b"]"
        try:
            async with asyncio.timeout(self.timeout):
                response = await self.client.post(self.url, content=body)
        except TimeoutError:
            raise HttpPostError(
                f"POST {self.shown_url}: no answer within {self.timeout:g}s"
            ) from None
        except httpx.TransportError as exc:
            raise HttpPostError(
                f"POST {self.shown_url}: {type(exc).__name__}: {str(exc) or 'failed'}"
            ) from exc
        if not response.is_success:
            reason = f" {response.reason_phrase}" if response.reason_phrase else ""
            raise HttpPostError(
                f"POST {self.shown_url}: HTTP {response.status_code}{reason}",
                status=response.status_code,
            )


def _shown(url: str) -> str:
    """``url`` as errors show it: without user info, query or fragment (they may hold secrets)."""
    return str(httpx.URL(url).copy_with(username=None, password=None, query=None, fragment=None))


async def post(payload: Payload[Message], ctx: Context) -> Result:
    """POST the message in ``payload.value`` in the next batch; ``Ok`` once the endpoint took it."""
    batch: GroupCommit[bytes] | None = getattr(ctx, "http", None)
    if batch is None:
        return Error(_needs_lifecycle(ctx, "http:post", "http:open_client"))
    return await batch.submit(encode(payload.value))


@contextlib.asynccontextmanager
async def open_client(ctx: Context) -> AsyncIterator[None]:
    """Open the HTTP client, batches as ``ctx.http`` (a GroupCommit); post what waits at exit."""
    options = _read_options(ctx, Options)
    headers = httpx.Headers({"Content-Type": _CONTENT_TYPES[options.format]})
    for name, value in options.headers.items():
        headers[name] = value.get_secret_value()  # replaces a default whatever its case
    async with httpx.AsyncClient(
        headers=headers, timeout=options.timeout, follow_redirects=False
    ) as client:
        poster = _Poster(
            client=client,
            url=options.url,
            shown_url=_shown(options.url),
            format=options.format,
            timeout=options.timeout,
        )
        # Closed first: the messages still waiting are posted before the client closes.
        async with GroupCommit(
            poster.send, max_size=options.batch_size, max_delay=options.batch_delay
        ) as ctx.http:
            yield
