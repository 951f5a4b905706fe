"""Shared fixtures: real Mosquitto brokers on free loopback ports, and unique topic prefixes.

Locally a missing `mosquitto` (or `openssl`, `mosquitto_passwd`) skips the tests that need a broker;
with `CI` set it fails them, because a skip must never count as a pass in CI.

`MQTT_COLLECTOR_TEST_BROKER` (`subprocess`, the default; `container`; `external`) chooses where the
shared `mosquitto` runs: see tests/helpers/broker_mode.py. A container mode without a Docker engine
is one more missing tool: a skip locally, a failure in CI. `private_mosquitto` and `make_mosquitto`
are subprocesses in every mode.
"""

from __future__ import annotations

import os
import re
import uuid
from typing import TYPE_CHECKING, NoReturn

import pytest

from tests.helpers.broker_mode import (
    BrokerMode,
    ContainerMosquitto,
    ExternalMosquitto,
    broker_choice,
)
from tests.helpers.mosquitto import BrokerUnavailableError, Mosquitto, MosquittoFactory

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

_NOT_CI = frozenset({"", "0", "false", "no"})


def pytest_configure(config: pytest.Config) -> None:
    """Refuse to run with a broker mode that does not parse, before any test starts."""
    try:
        broker_choice(os.environ)
    except ValueError as error:
        raise pytest.UsageError(str(error)) from None


def in_ci() -> bool:
    """Whether the tests run in CI (`CI` set to anything but empty, 0, false or no)."""
    return os.environ.get("CI", "").strip().lower() not in _NOT_CI


def broker_unavailable(error: BrokerUnavailableError) -> NoReturn:
    """Skip the test locally, fail it in CI, saying which tool is missing."""
    message = f"cannot run a test broker: {error}"
    if in_ci():
        pytest.fail(f"{message} (CI is set, so this is a failure, not a skip)")
    pytest.skip(message)


def _make(
    directory: Path,
    *,
    persistence: bool = False,
    tls: bool = False,
    auth: bool = False,
    extra_conf: str = "",
) -> Mosquitto:
    try:
        return Mosquitto(
            directory=directory, persistence=persistence, tls=tls, auth=auth, extra_conf=extra_conf
        )
    except BrokerUnavailableError as error:
        broker_unavailable(error)


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """The broker most tests share: plain, TLS, mutual-TLS and password listeners.

    In the container and external modes it has the plain listener only; a test asking for
    another skips, saying why.

    Never stop or reconfigure it; use `private_mosquitto` or `make_mosquitto` for that, and
    `topic_prefix` to keep out of other tests' messages.
    """
    choice = broker_choice(os.environ)
    directory = tmp_path_factory.mktemp("mosquitto")
    broker: Mosquitto
    if choice.mode is BrokerMode.EXTERNAL:
        assert choice.port is not None  # broker_choice requires it
        broker = ExternalMosquitto(host=choice.host, port=choice.port)
    elif choice.mode is BrokerMode.CONTAINER:
        try:
            broker = ContainerMosquitto(directory=directory)
        except BrokerUnavailableError as error:
            broker_unavailable(error)
    else:
        broker = _make(directory, tls=True, auth=True)
    with broker:
        yield broker


@pytest.fixture
def private_mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A broker of this test's own, with persistence on, to stop, kill or restart at will."""
    broker = _make(tmp_path / "mosquitto", persistence=True)
    with broker:
        yield broker


@pytest.fixture
def make_mosquitto(tmp_path: Path) -> Iterator[MosquittoFactory]:
    """A factory of brokers with custom options; every one it made is stopped at teardown."""
    made: list[Mosquitto] = []

    def make(
        *,
        persistence: bool = False,
        tls: bool = False,
        auth: bool = False,
        extra_conf: str = "",
        start: bool = True,
    ) -> Mosquitto:
        broker = _make(
            tmp_path / f"mosquitto-{len(made)}",
            persistence=persistence,
            tls=tls,
            auth=auth,
            extra_conf=extra_conf,
        )
        made.append(broker)
        if start:
            broker.start()
        return broker

    yield make
    for broker in reversed(made):
        broker.stop()


@pytest.fixture
def topic_prefix(request: pytest.FixtureRequest) -> str:
    """A topic prefix no other test uses: `test/<test name>/<8 hex digits>`, no wildcards in it."""
    # Parametrised names carry `[`, `/`, `+`, `#`…: keep only what is safe in one topic level.
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name).strip("_") or "test"
    return f"test/{name}/{uuid.uuid4().hex[:8]}"
