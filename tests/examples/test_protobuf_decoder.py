"""examples/protobuf-decoder: protobuf bodies decoded by a user decoder, on the in-memory kit.

protobuf is the user's dependency, not the project's: without it these tests are skipped.
``reading_pb2`` is built here from the same schema as ``reading.proto`` (no ``protoc`` needed),
as the module protoc would generate beside the config.
"""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest

from mqtt_collector.testing import TestDaemon
from tests.examples.helpers import load_example

pytest.importorskip("google.protobuf", reason="the example's decoder needs protobuf")

from google.protobuf import (
    descriptor_pb2,
    descriptor_pool,
    message_factory,
)

TOPIC = "sensors/north/t1/reading"


def _reading_class() -> Any:
    """The message class of ``reading.proto``'s ``example.Reading``."""
    field = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(
        name="reading.proto", package="example", syntax="proto3"
    )
    message = proto.message_type.add(name="Reading")
    for number, (name, kind) in enumerate(
        [
            ("sensor", field.TYPE_STRING),
            ("celsius", field.TYPE_DOUBLE),
            ("measured_at_ms", field.TYPE_INT64),
        ],
        start=1,
    ):
        message.field.add(name=name, number=number, type=kind, label=field.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("example.Reading"))


@pytest.fixture
def reading(monkeypatch: pytest.MonkeyPatch) -> Any:
    """``Reading``, importable as ``reading_pb2.Reading``; the example's decoder imported afresh."""
    cls = _reading_class()
    module = types.ModuleType("reading_pb2")
    module.Reading = cls  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "reading_pb2", module)
    monkeypatch.delitem(sys.modules, "reading_decoder", raising=False)
    yield cls
    sys.modules.pop("reading_decoder", None)


async def test_protobuf_reading_becomes_data(reading: Any) -> None:
    """A serialised Reading reaches the collector as a dict of its fields."""
    body = reading(sensor="t1", celsius=21.5, measured_at_ms=1714557600000).SerializeToString()
    async with TestDaemon(load_example("protobuf-decoder")) as daemon:
        outcome = await daemon.publish(TOPIC, body)
    assert outcome.acked
    assert outcome.results.is_ok()
    assert outcome.message is not None
    assert outcome.message.data == {
        "sensor": "t1",
        "celsius": 21.5,
        "measured_at_ms": 1714557600000,
    }


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b"nope", "decoder reading_decoder:decode raised DecodeError: Error parsing message"),
        (b"", "decoder reading_decoder:decode raised ValueError: reading without a sensor"),
    ],
    ids=["not-protobuf", "no-sensor"],
)
async def test_protobuf_bad_body_is_refused(reading: Any, body: bytes, detail: str) -> None:
    """A body that does not parse, or lacks its sensor, is refused with the reason, and acked."""
    async with TestDaemon(load_example("protobuf-decoder")) as daemon:
        outcome = await daemon.publish(TOPIC, body)
    assert (outcome.acked, outcome.refused) == (True, "decode")
    assert outcome.detail is not None
    assert outcome.detail.startswith(detail)
