"""No secret reaches any output: the daemon's logs, ``check`` and ``route``, or /metrics.

The daemon runs through its CLI as a real process against a password-protected Mosquitto, with a
collector whose processor and lifecycle teardown raise while a local variable holds a DSN with a
password. Every byte the processes write, and every endpoint's body, is searched for the broker
password and the DSN's password.
"""

from __future__ import annotations

import subprocess
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.helpers.daemon import WAIT, free_port, write_config
from tests.helpers.daemon_process import COMMAND, REPO, DaemonProcess, wait_for
from tests.helpers.mosquitto import Mosquitto
from tests.helpers.mqtt_client import connected_client

pytestmark = pytest.mark.broker


def _get(port: int, path: str) -> str:
    """The body of ``GET path`` on the daemon's endpoint, whatever the status."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=WAIT) as response:
            return str(response.read().decode())
    except urllib.error.HTTPError as error:
        with error:
            return str(error.read().decode())


def _cli(*args: str) -> str:
    """Run a short CLI command; return its stdout and stderr together."""
    done = subprocess.run(
        [*COMMAND, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_no_secret_in_logs_check_or_metrics(
    mosquitto: Mosquitto, topic_prefix: str, tmp_path: Path, fmt: str
) -> None:
    """Failing processor and teardown, check, route and /metrics: no password anywhere."""
    dsn_password = f"pw{uuid.uuid4().hex[:16]}"
    secrets = (mosquitto.password, dsn_password)
    metrics_port = free_port()
    config = write_config(
        tmp_path,
        port=mosquitto.auth_port,
        prefix=topic_prefix,
        broker={"username": mosquitto.username, "password": mosquitto.password},
        collectors=[
            {
                "key": "leaky",
                "processor": "tests.secret_collectors:store",
                "lifecycle": "tests.secret_collectors:database",
                "topics": ["all"],
                "options": {"dsn": f"pg://app:{dsn_password}@db/x"},
            }
        ],
        metrics={"listen": f"127.0.0.1:{metrics_port}"},
        logging={"format": fmt, "level": "debug"},
    )
    outputs = {
        "check": _cli("check", "--config", str(config)),
        "route": _cli("route", "--config", str(config), f"{topic_prefix}/x"),
    }
    daemon = DaemonProcess(tmp_path, config)
    daemon.start(wait_subscribed=False)
    try:

        def logged(text: str) -> bool:
            return text in daemon.text() or daemon.returncode is not None

        wait_for(lambda: logged("subscribed"), what="the daemon to subscribe")
        assert daemon.returncode is None, daemon.text()
        with connected_client(mosquitto.port) as publisher:
            publisher.publish_json(f"{topic_prefix}/x", {"t": 1})
        wait_for(lambda: logged("collector failed"), what="the processor to fail")
        for path in ("/metrics", "/healthz", "/readyz"):
            outputs[path] = _get(metrics_port, path)
        assert daemon.terminate() == 0
    finally:
        daemon.kill()
    outputs["run stdout"] = daemon.out_path.read_text(encoding="utf-8")
    outputs["run stderr"] = daemon.text()
    # The failures were logged, with the teardown's traceback: there was something to leak.
    assert "collector failed" in outputs["run stderr"]
    assert "lifecycle teardown failed" in outputs["run stderr"]
    assert "cannot close the connection" in outputs["run stderr"]
    assert "secret_collectors.py" in outputs["run stderr"]
    assert "mqtt_collector_deliveries" in outputs["/metrics"]
    leaks = [
        (name, secret) for name, text in outputs.items() for secret in secrets if secret in text
    ]
    assert leaks == []
