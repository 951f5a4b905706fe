"""User properties on MQTT 3.1.1, which has none: a JSON envelope around the body.

A publish that carries user properties (a dead letter's error, collector and topic) goes
out on MQTT 5 with them as properties and the body untouched. On 3.1.1 every transport
sends instead one JSON object: each property as a key (the first of a repeated name wins),
and the body under ``"body"`` — as text when it is UTF-8, else base64 with
``"body_encoding": "base64"`` — so nothing is lost either way.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence

__all__ = ["envelope"]


def envelope(body: bytes, properties: Sequence[tuple[str, str]]) -> bytes:
    """Return the JSON envelope of ``body`` with ``properties`` as its keys."""
    wrapped: dict[str, str] = {}
    for name, value in properties:
        wrapped.setdefault(name, value)
    try:
        wrapped["body"] = body.decode("utf-8")
    except UnicodeDecodeError:
        wrapped["body"] = base64.b64encode(body).decode("ascii")
        wrapped["body_encoding"] = "base64"
    else:
        wrapped.pop("body_encoding", None)
    return json.dumps(wrapped).encode()
