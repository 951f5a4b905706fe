"""SIGHUP to `mqtt-collector run` reloads its config file in place (as systemctl reload does)."""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING

import pytest
import yaml

from tests.helpers.daemon import write_config
from tests.helpers.daemon_process import DaemonProcess

if TYPE_CHECKING:
    from pathlib import Path

    from tests.helpers.mosquitto import Mosquitto

pytestmark = pytest.mark.broker


def test_sighup_reloads_the_config_file_and_a_bad_one_is_refused(
    mosquitto: Mosquitto, topic_prefix: str, tmp_path: Path
) -> None:
    """SIGHUP: a filter added on the same connection; a broken file then keeps the running one."""
    path = write_config(
        tmp_path,
        port=mosquitto.port,
        prefix=topic_prefix,
        subscriptions=[{"filter": f"{topic_prefix}/a/#", "topics": ["all"]}],
        logging={"format": "json", "level": "info"},
    )
    with DaemonProcess(tmp_path, path) as daemon:
        tree = yaml.safe_load(path.read_text(encoding="utf-8"))
        tree["subscriptions"].append({"filter": f"{topic_prefix}/b/#", "topics": ["all"]})
        path.write_text(yaml.safe_dump(tree), encoding="utf-8")
        daemon.process.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        [reloaded] = daemon.wait_log("reloaded")
        assert f"{topic_prefix}/b/#" in str(reloaded)
        path.write_text("broker: [not, a, mapping\n", encoding="utf-8")
        daemon.process.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        daemon.wait_log("reload failed: the running configuration stays")
        assert daemon.returncode is None  # still running on the config it had
        assert len(daemon.logs("connected")) == 1
        assert daemon.logs("reconnected") == []
        assert daemon.terminate() == 0
