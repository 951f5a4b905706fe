"""check warns (and run logs at start) about secrets others can read and code others can write."""

from __future__ import annotations

import contextlib
import io
import shutil
from pathlib import Path

import pytest

from mqtt_collector._cli import main
from tests.helpers.daemon import free_port, write_config
from tests.helpers.daemon_process import DaemonProcess, wait_for

SECRET = "literal-Pa55word-42"


def _check(config: Path) -> str:
    """Run ``check``; return what it printed (it exits 0, warnings or not)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["check", "--config", str(config)]) == 0
    return out.getvalue()


def _config(tmp_path: Path, mode: int, **broker: object) -> Path:
    config = write_config(tmp_path, port=free_port(), prefix="trust", broker=broker)
    config.chmod(mode)
    return config


def test_literal_password_in_a_world_readable_config_is_warned_about(tmp_path: Path) -> None:
    """A literal broker.password in a 0644 file: a warning naming the key and the mode."""
    output = _check(_config(tmp_path, 0o644, username="u", password=SECRET))
    assert "warning: " in output
    assert "broker.password: a literal secret in a file the group or others can read" in output
    assert "(mode 0644)" in output
    assert SECRET not in output


def test_literal_password_in_a_private_config_is_fine(tmp_path: Path) -> None:
    """The same file at 0600: no warning."""
    output = _check(_config(tmp_path, 0o600, username="u", password=SECRET))
    assert "literal secret" not in output
    assert "no warnings" in output


def test_password_from_the_environment_is_not_a_literal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``${MQTT_PASSWORD}`` in a 0644 file: no warning, the secret is not in the file."""
    monkeypatch.setenv("MQTT_PASSWORD", SECRET)
    output = _check(_config(tmp_path, 0o644, username="u", password="${MQTT_PASSWORD}"))
    assert "literal secret" not in output


def test_literal_key_passphrase_is_warned_about_too(tmp_path: Path) -> None:
    """A literal broker.tls.key_password in a group-readable file: a warning."""
    output = _check(_config(tmp_path, 0o640, tls={"key_password": SECRET}))
    assert "broker.tls.key_password: a literal secret" in output
    assert SECRET not in output


def test_readable_password_file_is_warned_about(tmp_path: Path) -> None:
    """password_file readable by others: a warning naming it."""
    secret = tmp_path / "password"
    secret.write_text(SECRET)
    secret.chmod(0o644)
    output = _check(_config(tmp_path, 0o600, username="u", password_file=str(secret)))
    assert f"broker.password_file: {secret} can be read by the group or others" in output
    secret.chmod(0o600)
    assert "can be read" not in _check(tmp_path / "config.yaml")


@pytest.mark.parametrize("mode", [0o664, 0o646])
def test_config_writable_by_others_is_warned_about(tmp_path: Path, mode: int) -> None:
    """A config the group or others can write: it names code to run, so a warning."""
    output = _check(_config(tmp_path, mode))
    assert f"the group or others can write it (mode {mode:04o}), and it names code" in output


def test_collector_module_writable_by_others_is_warned_about(tmp_path: Path) -> None:
    """A processor's module file others can write: a warning naming the file."""
    module = tmp_path / "trust_sink_module.py"
    shutil.copy(Path(__file__).parent / "helpers" / "collectors.py", module)
    module.chmod(0o666)
    entry = {
        "key": "rec",
        "processor": "trust_sink_module:record",
        "lifecycle": "trust_sink_module:recording_lifecycle",
        "topics": ["all"],
    }
    config = write_config(tmp_path, port=free_port(), prefix="trust", collectors=[entry])
    config.chmod(0o600)
    output = _check(config)
    assert f"the collector module {module} can be written by the group or others" in output
    module.chmod(0o644)
    assert "collector module" not in _check(config)


def test_run_logs_the_warnings_at_start(tmp_path: Path) -> None:
    """``run`` logs the same warnings at start (here while it cannot reach its broker)."""
    config = _config(tmp_path, 0o666, username="u", password=SECRET)
    daemon = DaemonProcess(tmp_path, config)
    daemon.start(wait_subscribed=False)
    try:
        wait_for(
            lambda: "a literal secret" in daemon.text() or daemon.returncode is not None,
            what="the warning",
        )
        assert daemon.terminate() == 0
    finally:
        daemon.kill()
    text = daemon.text()
    assert "broker.password: a literal secret" in text
    assert "the group or others can write it (mode 0666)" in text
    assert SECRET not in text
