"""End-to-end throughput of the daemon against a bare aiomqtt subscriber, in one run.

Starts a private ``mosquitto`` on a free port, queues N QoS 1 messages in the broker for an
offline persistent session, then times how long each subscriber takes to drain them:

- bare aiomqtt: ``async for message in client.messages`` and nothing else (acked on receipt);
- the daemon: mapping, decoding the JSON body, the collector queue, a no-op collector, and the
  ack after processing, in arrival order.

Run: ``python benchmarks/daemon_bench.py [--messages N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from mqtt_collector import Context, Ok, Payload, Result
from mqtt_collector._config.load import load_config
from mqtt_collector._daemon.daemon import Daemon
from mqtt_collector._logging import configure_logging

RECEIVED = 0
DONE: asyncio.Event | None = None
TARGET = 0


async def count(payload: Payload[Any], ctx: Context) -> Result:  # noqa: ARG001
    """Count a message; set DONE at the target."""
    global RECEIVED  # noqa: PLW0603 - a benchmark's one counter
    RECEIVED += 1
    if RECEIVED >= TARGET and DONE is not None:
        DONE.set()
    return Ok(None)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_broker(directory: Path, port: int) -> subprocess.Popen[bytes]:
    conf = directory / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\nuser root\n"
        "max_queued_messages 0\nmax_inflight_messages 0\n"
    )
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    proc = subprocess.Popen([binary, "-c", str(conf)], stderr=subprocess.DEVNULL)  # noqa: S603
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("mosquitto did not start")


def _session_properties() -> Properties:
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 3600
    return props


async def _prepare(port: int, client_id: str, topic: str, n: int) -> None:
    """Create the persistent session, then queue n QoS 1 messages for it."""
    async with aiomqtt.Client(
        "127.0.0.1",
        port,
        identifier=client_id,
        protocol=aiomqtt.ProtocolVersion.V5,
        clean_start=False,
        properties=_session_properties(),
    ) as client:
        await client.subscribe(f"{topic}/#", qos=1)
    async with aiomqtt.Client(
        "127.0.0.1", port, protocol=aiomqtt.ProtocolVersion.V5, max_inflight_messages=1000
    ) as publisher:
        publisher.pending_calls_threshold = batch = 500  # many publishes in flight is the point
        body = b'{"celsius": 21.5, "sensor": "abc"}'
        for start in range(0, n, batch):
            await asyncio.gather(
                *(
                    publisher.publish(f"{topic}/s{i % 10}/temperature", body, qos=1)
                    for i in range(start, min(n, start + batch))
                )
            )


async def bare(port: int, n: int, run: int) -> float:
    """Seconds for a bare aiomqtt subscriber to drain n queued messages."""
    client_id = f"bench-bare-{run}"
    await _prepare(port, client_id, f"bare{run}", n)
    received = 0
    start = time.perf_counter()
    async with aiomqtt.Client(
        "127.0.0.1",
        port,
        identifier=client_id,
        protocol=aiomqtt.ProtocolVersion.V5,
        clean_start=False,
        properties=_session_properties(),
    ) as client:
        async for _ in client.messages:
            received += 1
            if received >= n:
                break
    return time.perf_counter() - start


async def daemon(port: int, n: int, run: int, directory: Path) -> float:
    """Seconds for the daemon to drain, process and ack n queued messages."""
    client_id = f"bench-daemon-{run}"
    await _prepare(port, client_id, f"daemon{run}", n)
    # The config names this file as the module "daemon_bench", which is not __main__.
    counter: Any = importlib.import_module("daemon_bench")
    config_path = directory / "bench.yaml"
    config_path.write_text(
        f"""
broker: {{host: 127.0.0.1, port: {port}, client_id: {client_id}, protocol: 5}}
subscriptions:
  - {{filter: "daemon{run}/+/temperature", qos: 1, decode: json, topics: [temperature]}}
collectors:
  - {{key: count, processor: "daemon_bench:count", topics: [temperature]}}
logging: {{level: warning}}
"""
    )
    done = asyncio.Event()
    counter.DONE, counter.TARGET, counter.RECEIVED = done, n, 0
    running = Daemon(load_config(config_path))
    start = time.perf_counter()
    task = asyncio.create_task(running.run())
    await asyncio.wait_for(done.wait(), 600)
    # The last collector has returned; its ack (in order, after all others) goes out now.
    await asyncio.sleep(0)
    elapsed = time.perf_counter() - start
    assert not running.transport.unacked(), "acks still pending"
    running.stop()
    await task
    return elapsed


async def main() -> None:
    """Run both cases against one broker and print messages/s and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3, help="rounds; each keeps its best")
    args = parser.parse_args()
    n = args.messages
    sys.path.insert(0, str(Path(__file__).parent))
    configure_logging(level="warning")  # the daemon's own lines would only add noise
    bare_s = daemon_s = float("inf")
    with tempfile.TemporaryDirectory() as tmp:
        port = _free_port()
        broker = _start_broker(Path(tmp), port)
        try:
            # Interleaved rounds, each case keeping its best: this machine's speed drifts.
            for run in range(args.repeat):
                bare_s = min(bare_s, await bare(port, n, run))
                daemon_s = min(daemon_s, await daemon(port, n, run, Path(tmp)))
        finally:
            broker.terminate()
            broker.wait(10)
    print(
        f"python {sys.version.split()[0]}, {n} queued QoS 1 messages, best of {args.repeat} rounds"
    )
    print(f"{'bare aiomqtt subscriber':34} {n / bare_s:10,.0f} msg/s")
    print(f"{'daemon (map, queue, collect, ack)':34} {n / daemon_s:10,.0f} msg/s")
    print(f"{'ratio daemon / bare':34} {bare_s / daemon_s:10.2f}")


if __name__ == "__main__":
    asyncio.run(main())
