"""``ctx.publish``: a collector publishes through the daemon's connection (on the test kit)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml

from mqtt_collector import Context, Error, Message, Ok, Payload, Result
from mqtt_collector._exceptions import TransportError
from mqtt_collector.testing import Published, TestDaemon

HERE = "tests.test_context_publish"


@contextlib.asynccontextmanager
async def note_publish(ctx: Context) -> AsyncIterator[None]:
    """Record whether ``ctx.publish`` was there when the lifecycle started."""
    ctx.had_publish = callable(getattr(ctx, "publish", None))
    yield


async def forward(payload: Payload[Message], ctx: Context) -> Result:
    """Publish the body to ``out/<first capture>`` as the message's ``data`` says."""
    message = payload.value
    request = message.data
    await ctx.publish(
        f"out/{message.captures[0]}",
        json.dumps(request["body"]).encode(),
        **request.get("kwargs", {}),
    )
    return Ok(None)


async def forward_text(payload: Payload[Message], ctx: Context) -> Result:
    """Publish a str body, which ctx.publish refuses: it takes bytes."""
    await ctx.publish("out/text", json.dumps(payload.value.data))
    return Ok(None)


def _config(tmp_path: Path, processor: str = "forward") -> Path:
    path = tmp_path / "config.yaml"
    tree = {
        "subscriptions": [{"filter": "in/+", "topics": ["in"], "decode": "json"}],
        "collectors": [
            {
                "key": "fwd",
                "processor": f"{HERE}:{processor}",
                "lifecycle": f"{HERE}:note_publish",
                "topics": ["in"],
            }
        ],
    }
    path.write_text(yaml.safe_dump(tree), encoding="utf-8")
    return path


async def test_a_collector_publishes_through_ctx_publish(tmp_path: Path) -> None:
    """The publish reaches the transport with its topic, body, QoS and user properties."""
    async with TestDaemon(_config(tmp_path)) as daemon:
        assert daemon.context("fwd").had_publish  # set before the lifecycle ran
        plain = await daemon.publish("in/a", {"body": {"v": 1}})
        tagged = await daemon.publish(
            "in/b",
            {"body": 2, "kwargs": {"qos": 0, "user_properties": [["unit", "C"]]}},
        )
    assert [plain.acked, tagged.acked] == [True, True]
    assert plain.results.is_ok()
    assert tagged.results.is_ok()
    assert daemon.published == [
        Published("out/a", b'{"v": 1}', 1, ()),
        Published("out/b", b"2", 0, (("unit", "C"),)),
    ]


async def test_a_refused_publish_is_the_processors_error(tmp_path: Path) -> None:
    """A publish the broker refuses raises in the processor: its message gets an Error."""
    refusal = TransportError("not authorized")
    async with TestDaemon(_config(tmp_path)) as daemon:
        daemon.transport.refuse = refusal
        outcome = await daemon.publish("in/a", {"body": 1})
    result = outcome.results.first()
    assert isinstance(result, Error)
    assert result.exception is refusal
    assert daemon.published == []


@pytest.mark.parametrize(
    ("processor", "body", "error"),
    [
        ("forward", {"body": 1, "kwargs": {"qos": 2}}, ValueError),
        ("forward_text", {"body": 1}, TypeError),
    ],
)
async def test_ctx_publish_refuses_qos_2_and_a_body_not_bytes(
    tmp_path: Path, processor: str, body: object, error: type[Exception]
) -> None:
    """QoS 2 is refused as everywhere in the daemon; the body must be bytes."""
    async with TestDaemon(_config(tmp_path, processor)) as daemon:
        outcome = await daemon.publish("in/a", body)
    result = outcome.results.first()
    assert isinstance(result, Error)
    assert isinstance(result.exception, error)
    assert daemon.published == []
