"""The tests' one way to run the CLI's ``run`` as the real process an operator starts.

:class:`DaemonProcess` writes (or takes) a config, starts ``python -m mqtt_collector run
--config FILE`` with its log (stderr) in ``<name>.log`` and its stdout in ``<name>.out``, reads
the JSON log lines back, waits for one, sends a signal and reaps the process. Waits poll files
(what is awaited happens in another process, so there is no event to wait on), each bounded.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import yaml

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from types import TracebackType

__all__ = ["COMMAND", "REPO", "STOP_TIMEOUT", "DaemonProcess", "wait_for"]

REPO = Path(__file__).resolve().parents[2]
COMMAND = (sys.executable, "-m", "mqtt_collector")
STOP_TIMEOUT = 30.0  # seconds a daemon may take to drain and exit on a signal


def wait_for(
    condition: Callable[[], object], *, what: str, timeout: float = 10.0, interval: float = 0.05
) -> None:
    """Poll ``condition`` every ``interval`` until true; fail saying ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class DaemonProcess:
    """``mqtt-collector run --config FILE`` as a subprocess, its JSON log kept in a file.

    ``config`` is a config file, or a config tree written to ``directory/<name>.yaml``. The
    process runs ``command`` (``python -m mqtt_collector`` by default) from ``cwd`` (the
    repository) with ``env`` (the test's environment with the repository on PYTHONPATH).
    Nothing starts until :meth:`start` (or ``with``, which also waits for the subscription and
    kills the process at exit).
    """

    def __init__(
        self,
        directory: Path,
        config: Path | Mapping[str, Any],
        *,
        name: str = "daemon",
        command: Sequence[str] = COMMAND,
        cwd: Path = REPO,
        env: Mapping[str, str] | None = None,
    ) -> None:
        """Write the config (if a tree) into ``directory``; nothing starts yet."""
        directory.mkdir(parents=True, exist_ok=True)
        if isinstance(config, Mapping):
            self.config_path = directory / f"{name}.yaml"
            self.config_path.write_text(yaml.safe_dump(dict(config)), encoding="utf-8")
        else:
            self.config_path = config
        self.log_path = directory / f"{name}.log"
        self.out_path = directory / f"{name}.out"
        self.command = tuple(command)
        self.cwd = cwd
        self.env = dict(env) if env is not None else {**os.environ, "PYTHONPATH": str(REPO)}
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def pid(self) -> int:
        """The running daemon's process id."""
        return self._started().pid

    @property
    def returncode(self) -> int | None:
        """The daemon's exit status once it has exited, None while it runs."""
        return self._started().poll()

    def _started(self) -> subprocess.Popen[bytes]:
        assert self.process is not None, "the daemon was never started"
        return self.process

    def start(self, *, wait_subscribed: bool = True, timeout: float = 20.0) -> None:
        """Start the daemon; by default return once it has subscribed."""
        before = len(self.logs("subscribed"))
        with self.log_path.open("ab") as log, self.out_path.open("ab") as out:
            self.process = subprocess.Popen(
                [*self.command, "run", "--config", str(self.config_path)],
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=log,
            )
        self.starts += 1
        if wait_subscribed:
            self.wait_log("subscribed", count=before + 1, timeout=timeout)

    def text(self) -> str:
        """Everything the daemon logged so far (of every run)."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def logs(self, event: str | None = None) -> list[dict[str, Any]]:
        """Return the JSON log lines so far (of every run), those with ``event`` if given.

        A line that is not a JSON object (a torn last line, a plain config error) is skipped.
        """
        lines = []
        for line in self.text().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and (event is None or entry.get("event") == event):
                lines.append(entry)
        return lines

    def wait_log(
        self,
        event: str,
        *,
        count: int = 1,
        timeout: float = 20.0,
        where: Callable[[dict[str, Any]], bool] | None = None,
    ) -> list[dict[str, Any]]:
        """Wait until ``count`` log lines with ``event`` (matching ``where``) were written.

        Fails at once if the daemon exits first.
        """

        def found() -> list[dict[str, Any]]:
            return [e for e in self.logs(event) if where is None or where(e)]

        def ready() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(
                    f"the daemon exited with {self.process.returncode} while waiting for "
                    f"{event!r}:\n{self.tail()}"
                )
            return len(found()) >= count

        try:
            wait_for(ready, timeout=timeout, what=f"{count} log line(s) {event!r}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.tail()}") from None
        return found()

    def tail(self, lines: int = 30) -> str:
        """Return the end of the daemon's log, for failure messages."""
        return "\n".join(self.text().splitlines()[-lines:]) or "(no log)"

    def rss_kb(self) -> int:
        """Return the daemon's resident memory (VmRSS) in kB."""
        status = Path(f"/proc/{self.pid}/status").read_text(encoding="utf-8")
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError(f"no VmRSS in /proc/{self.pid}/status")

    def wait(self, timeout: float = STOP_TIMEOUT) -> int:
        """Wait for the daemon to exit by itself and return its exit status."""
        return self._started().wait(timeout=timeout)

    def kill(self) -> None:
        """SIGKILL the daemon if it still runs and reap it."""
        process = self.process
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT)

    def terminate(self, signum: int = signal.SIGTERM, *, timeout: float = STOP_TIMEOUT) -> int:
        """Send ``signum`` (SIGTERM), wait for the daemon and return its exit status."""
        process = self._started()
        if process.poll() is None:
            process.send_signal(signum)
        try:
            return process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT)
            raise AssertionError(
                f"the daemon ignored signal {signum} for {timeout}s:\n{self.tail()}"
            ) from None

    def __enter__(self) -> Self:
        """Start the daemon and wait until it has subscribed."""
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Kill the daemon if it still runs."""
        self.kill()
