"""The fault suite runs on both MQTT client libraries (MQTT 5): aiomqtt and gmqtt."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module", params=["aiomqtt", "gmqtt"])
def client(request: pytest.FixtureRequest) -> str:
    """The ``broker.client`` of the daemon under test (module scope: module-wide rigs too)."""
    return str(request.param)
