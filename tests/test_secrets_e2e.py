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
from typing import Any

import pytest

from tests.helpers.daemon import WAIT, free_port, write_config
from tests.helpers.daemon_process import COMMAND, REPO, DaemonProcess, wait_for
from tests.helpers.mosquitto import Mosquitto
from tests.helpers.mqtt_client import connected_client
from tests.test_tls_key_password import encrypt_key

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


def _cli_exit(code: int, *args: str) -> str:
    """Run a CLI command that must exit ``code``; return its stdout and stderr together."""
    done = subprocess.run(
        [*COMMAND, *args], cwd=REPO, capture_output=True, text=True, timeout=WAIT, check=False
    )
    assert done.returncode == code, done.stdout + done.stderr
    return done.stdout + done.stderr


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_no_secret_when_the_broker_config_or_a_lifecycle_fails(
    mosquitto: Mosquitto, topic_prefix: str, tmp_path: Path, fmt: str
) -> None:
    """Connection errors, check, route, config errors and a lifecycle crash: no secret shown.

    The broker password, an encrypted TLS key's passphrase and a DSN's password are all in
    play: the daemon loads the key with its passphrase at every try to connect to a port where
    the TLS handshake fails.
    """
    broker_password = f"bp{uuid.uuid4().hex[:16]}"
    key_password = f"kp{uuid.uuid4().hex[:16]}"
    dsn_password = f"pw{uuid.uuid4().hex[:16]}"
    secrets = (broker_password, key_password, dsn_password)
    key = encrypt_key(mosquitto.key_file, tmp_path / "client.key", key_password)
    tls = {
        "ca_file": str(mosquitto.ca_file),
        "cert_file": str(mosquitto.cert_file),
        "key_file": str(key),
        "key_password": key_password,
    }
    broker = {"username": "app", "password": broker_password, "tls": tls}
    leaky = {
        "key": "leaky",
        "processor": "tests.secret_collectors:store",
        "lifecycle": "tests.secret_collectors:database",
        "topics": ["all"],
        "options": {"dsn": f"pg://app:{dsn_password}@db/x"},
    }
    logging = {"format": fmt, "level": "debug"}

    def config(name: str, **keys: Any) -> Path:
        directory = tmp_path / name
        directory.mkdir()
        sections: dict[str, Any] = {"broker": broker, "collectors": [leaky], "logging": logging}
        sections.update(keys)
        # mosquitto.port is plain MQTT: every TLS handshake with it fails.
        return write_config(directory, port=mosquitto.port, prefix=topic_prefix, **sections)

    bad_broker = config("bad-broker")
    bad_broker.chmod(0o666)  # check and run warn about the literal secrets in it
    outputs = {
        "check": _cli("check", "--config", str(bad_broker)),
        "route": _cli("route", "--config", str(bad_broker), f"{topic_prefix}/x"),
    }
    assert "a literal secret" in outputs["check"]
    daemon = DaemonProcess(tmp_path / "bad-broker", bad_broker)
    daemon.start(wait_subscribed=False)
    try:
        wait_for(
            lambda: daemon.text().count("cannot connect") >= 2 or daemon.returncode is not None,
            what="two failed connects",
        )
        assert daemon.terminate() == 0, daemon.text()
    finally:
        daemon.kill()
    outputs["run, bad broker"] = daemon.out_path.read_text(encoding="utf-8") + daemon.text()
    assert "a literal secret" in outputs["run, bad broker"]

    wrong = config("wrong-types")
    text = wrong.read_text(encoding="utf-8")
    for secret in (broker_password, key_password):  # a mapping where a string belongs
        text = text.replace(f"password: {secret}", f"password: {{oops: {secret}}}")
    wrong.write_text(text, encoding="utf-8")
    outputs["config error, check"] = _cli_exit(2, "check", "--config", str(wrong))
    outputs["config error, run"] = _cli_exit(2, "run", "--config", str(wrong))
    assert "broker.password" in outputs["config error, run"]

    crashing = config(
        "crash", collectors=[{**leaky, "lifecycle": "tests.secret_collectors:unreachable"}]
    )
    outputs["lifecycle crash"] = _cli_exit(1, "run", "--config", str(crashing))
    assert "cannot open the database" in outputs["lifecycle crash"]

    leaks = [
        (name, secret) for name, text in outputs.items() for secret in secrets if secret in text
    ]
    assert leaks == []
