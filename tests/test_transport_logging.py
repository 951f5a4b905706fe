"""What aiomqtt and paho-mqtt log reaches the daemon's log at debug level only."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import TYPE_CHECKING

import pytest

from mqtt_collector._mqtt.aiomqtt.transport import AiomqttTransport
from tests.helpers.daemon import capture_logging, make_config, run_daemon, wait_until

if TYPE_CHECKING:
    from pathlib import Path

    from tests.helpers.mosquitto import Mosquitto

pytestmark = pytest.mark.broker


@pytest.mark.parametrize("level", ["info", "debug"])
async def test_broker_reset_logs_no_client_library_error(
    private_mosquitto: Mosquitto, topic_prefix: str, tmp_path: Path, level: str
) -> None:
    """A broker that dies with our ping unread (a reset): the daemon's warning, no paho error.

    At debug level paho's line is there, as a debug line.
    """
    broker = private_mosquitto
    config = make_config(tmp_path, port=broker.port, prefix=topic_prefix, broker={"keepalive": 1})
    with capture_logging(level) as logs:
        async with run_daemon(config) as daemon:
            transport = daemon.transport
            assert isinstance(transport, AiomqttTransport)
            assert transport._client is not None
            inner = transport._client._client
            pid = broker.pid
            assert pid is not None
            # Frozen, the broker leaves our next PINGREQ unread; killed, its kernel then
            # answers with a reset: paho's "failed to receive on socket" at error level.
            os.kill(pid, signal.SIGSTOP)
            try:
                await wait_until(
                    lambda: inner._ping_t > 0 and not inner._out_packet, what="a PINGREQ sent"
                )
            finally:
                broker.kill()
            await wait_until(lambda: logs.events("connection lost"), what="the loss to be seen")
            await asyncio.to_thread(broker.start)
            await wait_until(lambda: daemon.ready, what="the daemon to reconnect")
    errors = [line for line in logs.lines() if line["level"] in {"error", "critical"}]
    assert errors == [], errors
    foreign = [line for line in logs.lines() if not line["logger"].startswith("mqtt_collector.")]
    assert foreign == [], foreign
    paho = [line for line in logs.lines() if line["logger"] == "mqtt_collector.mqtt_client"]
    if level == "info":
        assert paho == []
    else:
        assert any("failed to receive on socket" in line["event"] for line in paho), paho
        assert {line["level"] for line in paho} == {"debug"}
