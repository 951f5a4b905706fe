"""broker.tls.key_password / key_password_file: an encrypted client key, for mutual TLS."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import pytest

from mqtt_collector._config.load import load_config
from mqtt_collector._exceptions import ConfigError
from mqtt_collector._mqtt.tls import TLSOptions
from tests.helpers.daemon import WAIT, make_config, records, run_daemon, wait_until
from tests.helpers.mosquitto import Mosquitto
from tests.helpers.mqtt_client import connected_client

PASSPHRASE = "key-Pa55phrase-0815"
_ROUTES = (
    "subscriptions: [{filter: a/+, topics: [t]}]\n"
    "collectors: [{key: c, processor: tests.helpers.collectors:record, topics: [t]}]\n"
)


def encrypt_key(key_file: Path, out: Path, passphrase: str = PASSPHRASE) -> Path:
    """Write ``key_file`` encrypted (AES-256) with ``passphrase`` to ``out``, with openssl."""
    subprocess.run(
        [
            *("openssl", "pkey", "-in", str(key_file), "-aes256"),
            *("-passout", f"pass:{passphrase}", "-out", str(out)),
        ],
        check=True,
        capture_output=True,
        timeout=WAIT,
    )
    assert out.read_text().startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----")
    return out


@pytest.mark.broker
async def test_daemon_connects_with_an_encrypted_key_and_its_passphrase(
    mosquitto: Mosquitto, topic_prefix: str, tmp_path: Path
) -> None:
    """Mutual TLS with an encrypted client key and key_password: connects and receives."""
    key = encrypt_key(mosquitto.key_file, tmp_path / "client.key")
    tls = {
        "ca_file": str(mosquitto.ca_file),
        "cert_file": str(mosquitto.cert_file),
        "key_file": str(key),
        "key_password": PASSPHRASE,
    }
    config = make_config(
        tmp_path, port=mosquitto.mtls_port, prefix=topic_prefix, broker={"tls": tls}
    )
    async with run_daemon(config) as daemon:
        with connected_client(mosquitto.port) as publisher:
            publisher.publish_json(f"{topic_prefix}/x", {"ok": True})
        await wait_until(lambda: records(daemon), what="the message")
    assert records(daemon)[0].data == {"ok": True}


@pytest.mark.broker
def test_key_password_file_is_read(mosquitto: Mosquitto, tmp_path: Path) -> None:
    """key_password_file: the passphrase is read (one newline dropped) and opens the key."""
    key = encrypt_key(mosquitto.key_file, tmp_path / "client.key")
    secret = tmp_path / "key-pass"
    secret.write_text(PASSPHRASE + "\n")
    config = tmp_path / "config.yaml"
    config.write_text(
        "broker:\n  tls:\n"
        f"    cert_file: {mosquitto.cert_file}\n    key_file: {key}\n"
        f"    key_password_file: {secret}\n" + _ROUTES,
        encoding="utf-8",
    )
    tls = load_config(config).broker.tls
    assert tls is not None
    assert tls.key_password is not None
    assert tls.key_password.get_secret_value() == PASSPHRASE
    assert PASSPHRASE not in repr(tls)
    options = TLSOptions(
        cert_file=str(mosquitto.cert_file),
        key_file=str(key),
        key_password=tls.key_password.get_secret_value(),
    )
    assert isinstance(options.context(), ssl.SSLContext)


@pytest.mark.broker
def test_encrypted_key_without_a_passphrase_names_the_setting(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """No passphrase for an encrypted key: an error naming the setting, never a prompt."""
    key = encrypt_key(mosquitto.key_file, tmp_path / "client.key")
    options = TLSOptions(cert_file=str(mosquitto.cert_file), key_file=str(key))
    with pytest.raises(ssl.SSLError, match=r"broker\.tls\.key_password"):
        options.context()


def test_key_password_and_its_file_together_are_refused(tmp_path: Path) -> None:
    """Both key_password and key_password_file: a config error."""
    secret = tmp_path / "key-pass"
    secret.write_text("x")
    config = tmp_path / "config.yaml"
    config.write_text(
        f"broker:\n  tls:\n    key_password: y\n    key_password_file: {secret}\n" + _ROUTES,
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match="key_password_file: give either"):
        load_config(config)
