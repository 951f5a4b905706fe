"""The processes ``e2e_bench.py`` starts: the flood publisher and the bare subscribers.

Each is ``python benchmarks/e2e_clients.py ROLE --port P ...``, a process of its own:

- ``publish``: writes MQTT 3.1.1 PUBLISH packets straight to a socket, so that it is never the
  bottleneck. A flood (``--rate 0``) is built in memory beforehand and written in one go; a steady
  rate stamps each body with its send time. Prints one JSON line: the first publish, the end of
  the writes, and when the broker had everything (all PUBACKs at QoS 1, a PINGRESP at QoS 0).
- ``aiomqtt``: ``async for message in client.messages``, counting, and nothing else.
- ``gmqtt``: a plain ``on_message`` callback, counting (gmqtt's default optimistic acks).

A subscriber writes ``{"last": receipt time of the Nth message, "count": N, "lat": [...]}`` to
``--result`` once it has N messages, then waits for its stdin to close, so that the harness can
read its CPU time and peak RSS while it still exists. Latencies (receipt - the body's ``t``, in
seconds, on the wall clock every process shares) are recorded with ``--latency`` only: it is the
only case where a bare subscriber decodes the JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import struct
import sys
import threading
import time
from pathlib import Path
from typing import Any

BODY_BYTES = 120


def body(seq: int, sent: float) -> bytes:
    """A JSON body of exactly BODY_BYTES bytes carrying its send time ``t``."""
    text = (
        f'{{"sensor":"s{seq % 10}","celsius":21.5,"humidity":40.1,"seq":{seq},'
        f'"t":{sent:.6f},"site":"plant-7","pad":"'
    )
    return (text + "x" * (BODY_BYTES - len(text) - 2) + '"}').encode()


def topic(prefix: str, seq: int) -> str:
    """The topic of message ``seq``: ten sensors under ``prefix``."""
    return f"{prefix}/s{seq % 10}/temperature"


# -- the publisher ---------------------------------------------------------------------------------


def _remaining_length(length: int) -> bytes:
    out = bytearray()
    while True:
        byte, length = length % 128, length // 128
        out.append(byte | (0x80 if length else 0))
        if not length:
            return bytes(out)


def _packet(first_byte: int, content: bytes) -> bytes:
    return bytes([first_byte]) + _remaining_length(len(content)) + content


def _string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("!H", len(raw)) + raw


def _publish_packet(topic_name: str, payload: bytes, qos: int, seq: int) -> bytes:
    packet_id = struct.pack("!H", seq % 65535 + 1) if qos else b""
    return _packet(0x30 | qos << 1, _string(topic_name) + packet_id + payload)


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    # MQTT 3.1.1, clean session, keep-alive 60 s, a client id of our own.
    variable = _string("MQTT") + bytes([4, 0x02]) + struct.pack("!H", 60)
    sock.sendall(_packet(0x10, variable + _string(f"bench-pub-{time.monotonic_ns()}")))
    connack = sock.recv(4)
    if len(connack) != 4 or connack[3] != 0:
        raise RuntimeError(f"CONNACK refused: {connack!r}")
    return sock


class _Reader(threading.Thread):
    """Reads what the broker sends back until ``expected`` bytes have come."""

    def __init__(self, sock: socket.socket, expected: int) -> None:
        super().__init__(daemon=True)
        self.sock, self.expected, self.done_at = sock, expected, 0.0

    def run(self) -> None:
        got = 0
        while got < self.expected:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise RuntimeError("the broker closed the publisher's connection")
            got += len(chunk)
        self.done_at = time.time()


def publish(args: argparse.Namespace) -> None:
    """Publish ``--messages`` messages, as fast as possible or at ``--rate`` per second."""
    n, qos = args.messages, args.qos
    sock = _connect(args.port)
    # Back from the broker: a 4-byte PUBACK per message at QoS 1, then the 2-byte PINGRESP.
    reader = _Reader(sock, 4 * n * qos + 2)
    reader.start()
    if args.rate == 0:
        stamp = time.time()
        blob = b"".join(
            _publish_packet(topic(args.prefix, i), body(i, stamp), qos, i) for i in range(n)
        )
        first = time.time()
        sock.sendall(blob)
    else:
        first = time.time()
        interval = 1 / args.rate
        start = time.monotonic()
        for i in range(n):
            delay = start + i * interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            sock.sendall(_publish_packet(topic(args.prefix, i), body(i, time.time()), qos, i))
    written = time.time()
    sock.sendall(b"\xc0\x00")  # PINGREQ: its PINGRESP comes after everything before it
    reader.join(120)
    sock.sendall(b"\xe0\x00")  # DISCONNECT
    sock.close()
    print(json.dumps({"first": first, "written": written, "broker_done": reader.done_at}))


# -- the bare subscribers --------------------------------------------------------------------------


class _Counter:
    """Counts messages, records latencies if asked, and writes the result at the target."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.target, self.latency, self.result = args.messages, args.latency, Path(args.result)
        self.count = 0
        self.lat: list[float] = []
        self.done = asyncio.Event()

    def __call__(self, payload: bytes | bytearray) -> None:
        self.count += 1
        if self.latency:
            self.lat.append(time.time() - json.loads(payload)["t"])
        if self.count == self.target:
            write_result(self.result, time.time(), self.count, self.lat)
            self.done.set()


def write_result(path: Path, last: float, count: int, lat: list[float]) -> None:
    """Write a subscriber's result atomically: the harness polls for the file."""
    part = path.with_suffix(".part")
    part.write_text(json.dumps({"last": last, "count": count, "lat": lat}))
    part.rename(path)


async def bare_aiomqtt(args: argparse.Namespace) -> None:
    """``async for message in client.messages``, counting."""
    import aiomqtt  # noqa: PLC0415 - each role imports only its own client

    counter = _Counter(args)
    async with aiomqtt.Client(
        "127.0.0.1", args.port, identifier=args.client_id, protocol=aiomqtt.ProtocolVersion.V5
    ) as client:
        await client.subscribe(args.filter, qos=args.qos)
        async for message in client.messages:
            counter(message.payload)  # type: ignore[arg-type,unused-ignore]  # bytes off the wire
            if counter.done.is_set():
                break
        _wait_for_stdin()


async def bare_gmqtt(args: argparse.Namespace) -> None:
    """A gmqtt client with a plain ``on_message`` callback, counting."""
    import gmqtt  # type: ignore[import-untyped,import-not-found,unused-ignore]  # noqa: PLC0415

    counter = _Counter(args)

    def on_message(_client: Any, _topic: str, payload: bytes, _qos: int, _props: Any) -> int:
        counter(payload)
        return 0  # the PUBACK reason code: success

    client = gmqtt.Client(args.client_id)
    client.on_message = on_message
    await client.connect("127.0.0.1", args.port, version=gmqtt.constants.MQTTv50)
    client.subscribe(args.filter, qos=args.qos)
    await counter.done.wait()
    _wait_for_stdin()
    await client.disconnect()


def _wait_for_stdin() -> None:
    """Block (the event loop too: nothing is left to do) until the harness closes our stdin."""
    sys.stdin.read()


def main() -> None:
    """Run one role."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("role", choices=["publish", "aiomqtt", "gmqtt"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--messages", type=int, required=True)
    parser.add_argument("--qos", type=int, choices=[0, 1], required=True)
    parser.add_argument("--prefix", help="publish: the topic prefix")
    parser.add_argument("--rate", type=float, default=0, help="publish: msg/s; 0 floods")
    parser.add_argument("--filter", help="subscribers: the topic filter")
    parser.add_argument("--client-id", help="subscribers: the client id")
    parser.add_argument("--result", help="subscribers: where to write the result")
    parser.add_argument("--latency", action="store_true", help="subscribers: record latencies")
    args = parser.parse_args()
    if args.role == "publish":
        publish(args)
    else:
        asyncio.run((bare_aiomqtt if args.role == "aiomqtt" else bare_gmqtt)(args))


if __name__ == "__main__":
    main()
