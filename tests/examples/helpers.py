"""Loading an example's config for a test broker, and waiting for a daemon to settle messages."""

from __future__ import annotations

from pathlib import Path

from mqtt_collector._config.load import Config, load_config
from mqtt_collector._daemon.daemon import Daemon

__all__ = ["EXAMPLES", "acked", "load_example"]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load_example(name: str, **environ: str) -> Config:
    """Load ``examples/<name>/config.yaml`` as it is, its ``${VAR}`` taken from ``environ`` only.

    The process environment is not consulted, so a developer's ``MQTT_HOST`` cannot point a
    test elsewhere: what ``environ`` does not give takes the config's default.
    """
    return load_config(EXAMPLES / name / "config.yaml", environ=environ)


def acked(daemon: Daemon) -> float:
    """How many QoS 1 messages ``daemon`` has acknowledged (each one settled by its collectors)."""
    value = daemon.metrics.registry.get_sample_value("mqtt_collector_messages_acked_total")
    return 0.0 if value is None else value
