"""deploy/compose.yaml is reviewed, not run (no Docker here): check what can be checked without it.

It parses; every `mqtt-collector` command it runs (service commands and health checks) is one
the CLI accepts; every daemon config it mounts loads; and each daemon's `stop_grace_period`
exceeds the stop's budget, `queue.drain_timeout` + 10 s.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from mqtt_collector._cli import _parser
from mqtt_collector._config.load import load_config

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
# The stop: drain within drain_timeout, then at most 10 s for lifecycles and the disconnect.
STOP_OVERHEAD = 10.0
# The image's ENTRYPOINT is ["mqtt-collector"]: a service's command is its arguments.
ENTRYPOINT = "mqtt-collector"
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(us|ms|s|m|h)")
_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def _compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def _services() -> dict[str, dict[str, Any]]:
    services = _compose()["services"]
    assert isinstance(services, dict)
    return services


def _daemons() -> list[str]:
    """The services that run this package: built from the repository's Dockerfile."""
    return [name for name, service in _services().items() if "build" in service]


def _seconds(duration: str) -> float:
    """Parse a compose duration such as `45s` or `1m30s`."""
    parts = _DURATION_PART.findall(duration)
    assert "".join(n + u for n, u in parts) == duration, f"not a compose duration: {duration!r}"
    return sum(float(number) * _UNITS[unit] for number, unit in parts)


def _commands(service: dict[str, Any]) -> list[list[str]]:
    """The `mqtt-collector` argument lists a service runs: its command and its health check."""
    commands = [list(service["command"])]
    test = service.get("healthcheck", {}).get("test")
    if test is not None:
        assert test[0] == "CMD", f"exec-form health check expected, got {test!r}"
        assert test[1] == ENTRYPOINT, f"health check runs {test[1]!r}, not {ENTRYPOINT}"
        commands.append(list(test[2:]))
    return commands


def _host_path(service: dict[str, Any], container_path: str) -> Path:
    """The file on this side of the read-only bind mount that holds `container_path`."""
    for volume in service["volumes"]:
        source, target, *options = volume.split(":")
        if container_path == target or container_path.startswith(target + "/"):
            assert options == ["ro"], f"{volume!r}: the config must be mounted read-only"
            assert source.startswith("."), f"{volume!r}: not a bind mount of a repository file"
            return Path(DEPLOY / source / container_path[len(target) :].lstrip("/")).resolve()
    pytest.fail(f"{container_path} is not mounted into the service")


def _config_path(args: list[str]) -> str:
    return args[args.index("--config") + 1]


def test_compose_parses() -> None:
    """compose.yaml is YAML with the broker and the daemon among its services."""
    assert {"mosquitto", "mqtt-collector"} <= set(_services())


def test_compose_pins_images() -> None:
    """Every image pulled names a fixed release, not `latest` or no tag."""
    for name, service in _services().items():
        if "build" in service:
            continue
        _, _, tag = service["image"].partition(":")
        assert tag[:1].isdigit(), f"{name}: image {service['image']!r} is not pinned"


@pytest.mark.parametrize("service_name", _daemons())
def test_compose_commands_exist(service_name: str) -> None:
    """Each command a daemon service runs parses with the package's own CLI parser."""
    service = _services()[service_name]
    commands = _commands(service)
    assert [args[0] for args in commands] == ["run", "health"]
    for args in commands:
        parsed = _parser().parse_args(args)
        assert parsed.command == args[0]


@pytest.mark.parametrize("service_name", _daemons())
def test_compose_config_is_valid(service_name: str) -> None:
    """The config a daemon service mounts loads, with the environment compose gives it."""
    service = _services()[service_name]
    for args in _commands(service):
        config = load_config(
            _host_path(service, _config_path(args)), environ=service.get("environment", {})
        )
        assert config.subscriptions


@pytest.mark.parametrize("service_name", _daemons())
def test_compose_stop_grace_period_covers_drain(service_name: str) -> None:
    """stop_grace_period exceeds queue.drain_timeout + 10 s, so Docker never kills the drain."""
    service = _services()[service_name]
    config_path = _host_path(service, _config_path(list(service["command"])))
    config = load_config(config_path, environ=service.get("environment", {}))
    grace = _seconds(service["stop_grace_period"])
    assert grace > config.queue.drain_timeout + STOP_OVERHEAD
    assert service.get("stop_signal", "SIGTERM") == "SIGTERM"


def test_mosquitto_conf_raises_queue_limits() -> None:
    """The broker's conf keeps sessions on disk and queues more than Mosquitto's 1000 default."""
    service = _services()["mosquitto"]
    mounted = [v for v in service["volumes"] if v.endswith(":/mosquitto/config/mosquitto.conf:ro")]
    assert len(mounted) == 1
    conf = (DEPLOY / mounted[0].split(":")[0]).read_text()
    settings = dict(
        line.split(None, 1) for line in conf.splitlines() if line and not line.startswith("#")
    )
    assert settings["persistence"] == "true"
    assert int(settings["max_queued_messages"]) > 1000
    assert int(settings["max_queued_bytes"]) > 0
    assert settings["persistent_client_expiration"]
    assert settings["listener"] == "1883"


@pytest.mark.parametrize(
    ("text", "seconds"), [("45s", 45.0), ("1m30s", 90.0), ("1h", 3600.0), ("500ms", 0.5)]
)
def test_seconds_parses_compose_durations(text: str, seconds: float) -> None:
    """The duration parser this test relies on reads compose's forms."""
    assert _seconds(text) == seconds
