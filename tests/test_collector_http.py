"""The http collector against a real HTTP server on 127.0.0.1 that each test starts.

The server is a few lines of asyncio (no new dependency): it records every request, and each
answer is scripted: a status, or held until the test releases it, or never sent (a timeout).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Self

import pytest
import yaml

from mqtt_collector import ConfigError, Context, Error, Message, Ok, Payload, Result
from mqtt_collector.collectors import http
from mqtt_collector.testing import TestDaemon
from tests.helpers.daemon import capture_logging, wait_until

WAIT = 10.0  # seconds: a bound on every wait, far above what any of them takes
SECRET = "s3cr3t-t0ken-value"  # a header's value, to look for where it must not show
QUERY = "qu3ry-s3cr3t"  # in the URL's query, which errors leave out


@dataclass(frozen=True, slots=True)
class Request:
    """One request the server received."""

    method: str
    path: str
    headers: Mapping[str, str]  # names lower-cased
    body: bytes

    def objects(self) -> list[Any]:
        """The JSON objects of the body: a JSON array's items, or one per NDJSON line."""
        if self.headers.get("content-type") == "application/x-ndjson":
            assert self.body.endswith(b"\n")
            return [json.loads(line) for line in self.body.splitlines()]
        items = json.loads(self.body)
        assert isinstance(items, list)
        return items


class Answer:
    """How the server answers one request: ``status``, once ``release`` is set."""

    def __init__(self, status: int = 200, *, held: bool = False) -> None:
        """An answer with ``status``, sent at once unless ``held`` (until released, if ever)."""
        self.status = status
        self.release = asyncio.Event()
        if not held:
            self.release.set()


class HttpServer:
    """An HTTP/1.1 server on a free 127.0.0.1 port that records requests and answers as told.

    ``answers`` are used one per request, in order; once they run out every answer is 200.
    """

    def __init__(self) -> None:
        """Nothing listens until ``async with``."""
        self.requests: list[Request] = []
        self.answers: list[Answer] = []
        self._arrived = asyncio.Condition()
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[Any]] = set()

    @property
    def url(self) -> str:
        """The URL to POST to, with a query that errors must not show."""
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/ingest?key={QUERY}"

    async def wait_requests(self, count: int) -> list[Request]:
        """Return the requests once ``count`` have arrived."""
        async with asyncio.timeout(WAIT), self._arrived:
            await self._arrived.wait_for(lambda: len(self.requests) >= count)
        return list(self.requests)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return  # the client closed the connection
                request_line, *lines = head.decode("latin-1").split("\r\n")[:-2]
                method, target, _ = request_line.split(" ", 2)
                headers = {}
                for line in lines:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                answer = self.answers.pop(0) if self.answers else Answer()
                async with self._arrived:
                    self.requests.append(Request(method, target, headers, body))
                    self._arrived.notify_all()
                await answer.release.wait()
                writer.write(
                    f"HTTP/1.1 {answer.status} Status\r\nContent-Length: 0\r\n\r\n".encode()
                )
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            return
        finally:
            self._handlers.discard(task)
            writer.close()

    async def __aenter__(self) -> Self:
        """Start listening."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Stop listening and close every connection (an answer still held is never sent)."""
        assert self._server is not None
        self._server.close()
        handlers = list(self._handlers)
        for handler in handlers:
            handler.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await self._server.wait_closed()


@pytest.fixture
async def server() -> AsyncIterator[HttpServer]:
    """A fresh HTTP server for the test."""
    async with HttpServer() as running:
        yield running


def _message(
    topic: str = "sensors/kitchen/temperature", data: Any = None, *, raw: bytes | None = None
) -> Message:
    """A message as the mapper builds one: data {"t": 21.5} with its JSON body by default."""
    if data is None:
        data = {"t": 21.5}
    if raw is None:
        raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return Message(
        topic=topic,
        data=data,
        raw=raw,
        qos=1,
        retain=False,
        captures=("kitchen",),
        subscription="sensors/+/temperature",
        received_at=1_700_000_000.25,
    )


def _record(message: Message) -> dict[str, Any]:
    """The JSON object a message is posted as."""
    return {
        "topic": message.topic,
        "data": message.data,
        "qos": message.qos,
        "retain": message.retain,
        "captures": list(message.captures),
        "received_at": message.received_at,
        "subscription": message.subscription,
    }


@contextlib.asynccontextmanager
async def _collector(**options: Any) -> AsyncIterator[Context]:
    """The http collector's context, its lifecycle entered with ``options``."""
    ctx = Context(key="h", options=MappingProxyType(options))
    async with http.open_client(ctx):
        yield ctx


async def _post(ctx: Context, message: Message | None = None) -> Result:
    return await http.post(Payload(message or _message()), ctx)


class TestBodies:
    """What a POST carries."""

    async def test_http_posts_a_json_array_of_message_objects(self, server: HttpServer) -> None:
        """One message is one POST of a JSON array holding its object, as application/json."""
        message = _message()
        async with _collector(url=server.url) as ctx:
            result = await _post(ctx, message)
        assert result == Ok(None)
        [request] = await server.wait_requests(1)
        assert (request.method, request.path) == ("POST", f"/ingest?key={QUERY}")
        assert request.headers["content-type"] == "application/json"
        assert request.objects() == [_record(message)]

    async def test_http_posts_ndjson_one_object_per_line(self, server: HttpServer) -> None:
        """``format: ndjson``: one object per line, each ending in a newline."""
        messages = [_message(data={"t": n}) for n in range(3)]
        async with _collector(
            url=server.url, format="NDJSON", batch_size=3, batch_delay=WAIT
        ) as ctx:
            results = await asyncio.gather(*(_post(ctx, m) for m in messages))
        assert results == [Ok(None)] * 3
        [request] = await server.wait_requests(1)
        assert request.headers["content-type"] == "application/x-ndjson"
        assert request.objects() == [_record(m) for m in messages]

    async def test_http_posts_bytes_and_non_json_bodies_as_base64(self, server: HttpServer) -> None:
        """A bytes body, or a value strict JSON cannot hold, goes as base64 of the raw body."""
        raw = bytes(range(256))
        messages = [_message(data=raw), _message(data=float("nan"), raw=b"NaN")]
        async with _collector(url=server.url) as ctx:
            for message in messages:
                assert await _post(ctx, message) == Ok(None)
        requests = await server.wait_requests(2)
        objects = [request.objects()[0] for request in requests]
        assert [(o["data_encoding"], base64.b64decode(o["data"])) for o in objects] == [
            ("base64", raw),
            ("base64", b"NaN"),
        ]


class TestHeaders:
    """The ``headers`` option."""

    async def test_http_sends_the_configured_headers(self, server: HttpServer) -> None:
        """Every configured header goes with every POST; one may replace Content-Type."""
        headers = {"Authorization": f"Bearer {SECRET}", "content-type": "application/vnd.x+json"}
        async with _collector(url=server.url, headers=headers) as ctx:
            assert await _post(ctx) == Ok(None)
            assert await _post(ctx) == Ok(None)
        for request in await server.wait_requests(2):
            assert request.headers["authorization"] == f"Bearer {SECRET}"
            assert request.headers["content-type"] == "application/vnd.x+json"

    async def test_http_header_values_show_in_no_repr_or_error(self, server: HttpServer) -> None:
        """The options' repr and a failed POST's error hold neither a header value nor the query."""
        server.answers = [Answer(401)]
        async with _collector(url=server.url, headers={"X-Api-Key": SECRET}) as ctx:
            result = await _post(ctx)
        assert isinstance(result, Error)
        assert SECRET not in repr(ctx.options)
        assert SECRET not in str(ctx.options)
        assert SECRET not in repr(ctx)
        assert str(result.exception) == (f"POST {server.url.partition('?')[0]}: HTTP 401 Status")

    async def test_http_header_secrets_stay_out_of_the_daemons_logs(
        self, server: HttpServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Through the daemon, a token from ${ENV} reaches the server and no log line."""
        monkeypatch.setenv("INGEST_TOKEN", SECRET)
        server.answers = [Answer(500), Answer(500)]
        config = _daemon_config(
            tmp_path,
            {"url": server.url, "headers": {"Authorization": "Bearer ${INGEST_TOKEN}"}},
            retry={"attempts": 2, "backoff": 0},
        )
        with capture_logging() as logs:
            async with TestDaemon(config) as daemon:
                outcome = await daemon.publish("in/a", {"t": 1})
        assert isinstance(outcome.results.first(), Error)
        requests = await server.wait_requests(2)
        assert {r.headers["authorization"] for r in requests} == {f"Bearer {SECRET}"}
        assert logs.events("collector failed")  # the failure was logged ...
        assert SECRET not in logs.text  # ... without the token
        assert QUERY not in logs.text  # ... or the URL's query


class TestBatches:
    """Concurrent calls share POSTs; each is answered by its own batch."""

    async def test_http_concurrent_calls_join_one_post(self, server: HttpServer) -> None:
        """Calls made together go in one POST (up to batch_size), each answered Ok."""
        messages = [_message(data={"n": n}) for n in range(20)]
        async with _collector(url=server.url, batch_size=20, batch_delay=WAIT) as ctx:
            results = await asyncio.gather(*(_post(ctx, m) for m in messages))
        assert results == [Ok(None)] * 20
        assert len(server.requests) == 1
        assert server.requests[0].objects() == [_record(m) for m in messages]

    async def test_http_calls_arriving_during_a_post_go_in_the_next(
        self, server: HttpServer
    ) -> None:
        """With the defaults, the calls made while a POST is under way share the next one."""
        first = Answer(held=True)
        server.answers = [first]
        async with _collector(url=server.url) as ctx:
            leading = asyncio.create_task(_post(ctx, _message(data={"n": 0})))
            await server.wait_requests(1)
            rest = [asyncio.create_task(_post(ctx, _message(data={"n": n}))) for n in range(1, 6)]
            await wait_until(lambda: ctx.http.waiting == 5, what="five calls waiting")
            assert not leading.done()  # answered only once its POST is
            first.release.set()
            results = await asyncio.gather(leading, *rest)
        assert results == [Ok(None)] * 6
        assert [[o["data"]["n"] for o in r.objects()] for r in server.requests] == [
            [0],
            [1, 2, 3, 4, 5],
        ]

    async def test_http_a_failed_post_is_an_error_for_each_of_its_messages(
        self, server: HttpServer
    ) -> None:
        """A 500 fails every message of its batch; the next POST succeeds again."""
        server.answers = [Answer(500)]
        async with _collector(url=server.url, batch_size=3, batch_delay=WAIT) as ctx:
            failed = await asyncio.gather(*(_post(ctx) for _ in range(3)))
            recovered = await asyncio.gather(*(_post(ctx) for _ in range(3)))
        assert all(isinstance(result, Error) for result in failed)
        errors = {id(result.exception) for result in failed if isinstance(result, Error)}
        assert len(errors) == 1  # one failure: the batch's
        exception = failed[0].exception if isinstance(failed[0], Error) else None
        assert isinstance(exception, http.HttpPostError)
        assert exception.status == 500
        assert recovered == [Ok(None)] * 3
        assert len(server.requests) == 2


class TestFailures:
    """No answer, or no server: an Error, and the next POST works again."""

    async def test_http_a_post_past_the_timeout_is_an_error(self, server: HttpServer) -> None:
        """An endpoint that does not answer within ``timeout`` gives an Error; then it recovers."""
        server.answers = [Answer(held=True)]  # never released
        async with _collector(url=server.url, timeout=0.2) as ctx:
            late = await _post(ctx)
            recovered = await _post(ctx)
        assert isinstance(late, Error)
        assert isinstance(late.exception, http.HttpPostError)
        assert late.exception.status is None
        assert "no answer within 0.2s" in str(late.exception)
        assert recovered == Ok(None)

    async def test_http_a_refused_connection_is_an_error(self) -> None:
        """Nothing listening: an Error naming the failure, not an exception out of post."""
        async with HttpServer() as gone:
            url = gone.url
        async with _collector(url=url) as ctx:
            result = await _post(ctx)
        assert isinstance(result, Error)
        assert isinstance(result.exception, http.HttpPostError)
        assert "ConnectError" in str(result.exception)
        assert QUERY not in str(result.exception)

    async def test_http_post_without_its_lifecycle_is_an_error(self) -> None:
        """Forgetting ``lifecycle: ...http:open_client`` is an Error saying so."""
        result = await http.post(Payload(_message()), Context(key="h"))
        assert isinstance(result, Error)
        assert "lifecycle: mqtt_collector.collectors.http:open_client" in str(result.exception)


class TestThroughTheDaemon:
    """The collector as a config names it, in a daemon (in-memory broker, real HTTP server)."""

    async def test_http_a_message_is_acked_only_after_its_post_was_answered(
        self, server: HttpServer, tmp_path: Path
    ) -> None:
        """The ack waits for the endpoint's 2xx; a 500 is retried per the collector's retry."""
        held = Answer(500, held=True)
        server.answers = [held]
        config = _daemon_config(tmp_path, {"url": server.url}, retry={"attempts": 2, "backoff": 0})
        async with TestDaemon(config) as daemon:
            publishing = asyncio.create_task(daemon.publish("in/a", {"t": 1}))
            await server.wait_requests(1)
            assert daemon.transport.acked == []
            held.release.set()
            outcome = await publishing
        assert outcome.acked
        assert outcome.results.is_ok()
        assert len(server.requests) == 2  # the 500, then the retry's 200


def _daemon_config(tmp_path: Path, options: dict[str, Any], **entry: Any) -> Path:
    """A config feeding ``in/+`` (JSON) to an http collector with ``options``."""
    path = tmp_path / "config.yaml"
    tree = {
        "subscriptions": [{"filter": "in/+", "topics": ["in"], "decode": "json"}],
        "collectors": [
            {
                "key": "h",
                "processor": "mqtt_collector.collectors.http:post",
                "lifecycle": "mqtt_collector.collectors.http:open_client",
                "topics": ["in"],
                "options": options,
                **entry,
            }
        ],
    }
    path.write_text(yaml.safe_dump(tree), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({}, "option 'url': is required"),
        ({"url": "ftp://example.com/x"}, "option 'url': must be an http:// or https:// URL"),
        ({"url": "http:///x"}, "option 'url': must be an http:// or https:// URL"),
        ({"url": "http://x", "format": "xml"}, "option 'format': must be one of json, ndjson"),
        ({"url": "http://x", "headers": ["a"]}, "option 'headers': must be a mapping"),
        ({"url": "http://x", "headers": {"A b": "v"}}, "'A b' is not a header name"),
        ({"url": "http://x", "headers": {"K": 12345}}, "header 'K': the value must be a string"),
        ({"url": "http://x", "headers": {"K": "a\nb"}}, "must not hold a line break"),
        ({"url": "http://x", "timeout": 0}, "option 'timeout': must be a number of seconds > 0"),
        ({"url": "http://x", "batch_size": 0}, "option 'batch_size': must be an integer >= 1"),
        ({"url": "http://x", "batch_size": True}, "option 'batch_size': must be an integer >= 1"),
        ({"url": "http://x", "batch_delay": -1}, "option 'batch_delay': must be a number"),
        (
            {"url": "http://x", "batch_delay": float("inf")},
            "option 'batch_delay': must be a number of seconds >= 0, got inf",
        ),
        ({"url": "http://x", "retries": 3}, "option 'retries': unknown option"),
    ],
)
async def test_http_refuses_a_bad_option_in_one_line(options: dict[str, Any], error: str) -> None:
    """A wrong option is a one-line ConfigError naming the collector and the option."""
    with pytest.raises(ConfigError) as raised:
        async with _collector(**options):
            pass
    message = str(raised.value)
    assert message.startswith("collector 'h': option ")
    assert error in message
    assert "\n" not in message
    assert "12345" not in message  # a header value is never shown
