"""A user decoder for ``decode: reading_decoder:decode``: protobuf ``Reading`` bodies to dicts.

``reading_pb2`` is what ``protoc --python_out=. reading.proto`` generates beside this file;
protobuf itself is the user's dependency (``pip install protobuf``), not mqtt-collector's.

A decoder runs synchronously on the daemon's receive path, once per message, before the message
is queued: keep it to parsing. Whatever it raises refuses the message (logged with the exception
type and message, counted, acknowledged), as invalid JSON is refused.
"""

from __future__ import annotations

from reading_pb2 import Reading


def decode(body: bytes, topic: str) -> dict[str, object]:  # noqa: ARG001 - one message type here
    """Parse a ``Reading``; its fields become ``message.data``.

    Raises:
        google.protobuf.message.DecodeError: the body is not a protobuf message.
        ValueError: it parsed but names no sensor (protobuf is not self-describing, so a body
            of another type may parse too: check what must be there).
    """
    reading = Reading.FromString(body)
    if not reading.sensor:
        raise ValueError("reading without a sensor")
    # Written out rather than json_format.MessageToDict, which gives 64-bit integers as
    # strings (the protobuf JSON mapping).
    return {
        "sensor": reading.sensor,
        "celsius": reading.celsius,
        "measured_at_ms": reading.measured_at_ms,
    }
