"""The demo's configuration: a real YAML file, written where the user can read and copy it."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path

__all__ = ["TOPIC_ROOT", "DemoFiles", "write_config"]

TOPIC_ROOT = "demo/sensors"  # readings go to demo/sensors/<site>/<device>/<quantity>


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoFiles:
    """Where the demo writes: its config, the SQLite database and the JSON Lines file."""

    directory: Path
    config: Path
    database: Path
    jsonl: Path
    table: str = "readings"

    @classmethod
    def in_directory(cls, directory: Path) -> DemoFiles:
        """Name the files in ``directory`` (made absolute, so the config works from anywhere)."""
        directory = directory.resolve()
        return cls(
            directory=directory,
            config=directory / "demo.yaml",
            database=directory / "readings.db",
            jsonl=directory / "readings.jsonl",
        )

    def start_afresh(self) -> None:
        """Create the directory; remove what an earlier run wrote there (only the demo's files)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        for path in (self.config, self.database, self.jsonl):
            path.unlink(missing_ok=True)
        for suffix in ("-wal", "-shm", "-journal"):
            self.database.with_name(self.database.name + suffix).unlink(missing_ok=True)


def _quoted(text: str) -> str:
    return json.dumps(text)  # a JSON string is a YAML double-quoted string


_TEMPLATE = """\
# The configuration `mqtt-collector demo` ran the daemon with: copy it and change it.
#     mqtt-collector check --config {config}
#     mqtt-collector run --config {config}
# config/example.yaml in the repository documents every key.

broker:
  host: {host}
  port: {port}
  # {protocol_why}
  protocol: "{protocol}"
  # A fixed client id and a persistent session: what the broker has not seen acknowledged waits
  # for the daemon's return (acks go out only once every collector has finished).
  client_id: {client_id}
  session: {{persistent: true, expiry: 3600}}
{username}
subscriptions:
  - filter: {root}/+/+/temperature
    qos: 1
    decode: json  # a body that is not JSON is refused: counted, logged, acked, never stored
    topics: [temperature]
    max_body_bytes: 4096
  - filter: {root}/+/+/humidity
    qos: 1
    decode: json
    topics: [humidity]
    max_body_bytes: 4096
  - filter: {root}/+/+/status
    qos: 1
    decode: text
    topics: [status]

collectors:
  - key: database
    processor: mqtt_collector.collectors.sqlite:write
    lifecycle: mqtt_collector.collectors.sqlite:open_database
    topics: [temperature, humidity]
    options: {{path: {database}, table: {table}}}
  - key: archive
    processor: mqtt_collector.collectors.jsonl:write
    lifecycle: mqtt_collector.collectors.jsonl:open_file
    topics: [temperature, humidity]
    options: {{path: {jsonl}}}
  - key: status
    # One log line per device status change (online / offline).
    processor: mqtt_collector.collectors.log:log
    topics: [status]
    options: {{level: info}}

queue:
  drain_timeout: 10

logging:
  level: info
"""

_EMBEDDED_WHY = "The embedded broker (amqtt) speaks MQTT 3.1.1 only."
_USERNAME = """\
  # amqtt keeps the session of a client that gives a user name (any name) and drops an
  # anonymous client's session when it disconnects.
  username: demo
"""


def write_config(files: DemoFiles, *, host: str, port: int, protocol: str, embedded: bool) -> Path:
    """Write the demo's config to ``files.config`` and return its path."""
    text = _TEMPLATE.format(
        config=_quoted(str(files.config)),
        host=_quoted(host),
        port=port,
        protocol=protocol,
        protocol_why=_EMBEDDED_WHY if embedded else "MQTT 5, or 3.1.1 for a broker without it.",
        client_id=_quoted(f"mqtt-collector-demo-{secrets.token_hex(3)}"),
        username=_USERNAME if embedded else "",
        root=TOPIC_ROOT,
        database=_quoted(str(files.database)),
        table=files.table,
        jsonl=_quoted(str(files.jsonl)),
    )
    files.config.write_text(text)
    return files.config
