"""A real Mosquitto broker for the tests, run as a subprocess on free 127.0.0.1 ports.

`Mosquitto` writes its conf, certificates and password file into a directory of its own, starts
`mosquitto` on ports picked at construction and keeps those ports across `restart()`, so a client
configured once can reconnect to the same broker after a restart or a kill.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Final, Protocol, Self

if TYPE_CHECKING:
    from types import TracebackType

__all__ = [
    "BrokerStartError",
    "BrokerUnavailableError",
    "Mosquitto",
    "MosquittoFactory",
    "find_mosquitto",
]

HOST: Final = "127.0.0.1"
USERNAME: Final = "collector"
PASSWORD: Final = "s3cret"

# Where Debian puts the binaries when /usr/sbin is not on PATH (a non-root shell).
_FALLBACK_DIRS: Final = ("/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin")
_START_TIMEOUT: Final = 10.0
_STOP_TIMEOUT: Final = 10.0
_START_ATTEMPTS: Final = 5
_LOG_TAIL_LINES: Final = 40
_BIND_FAILURE: Final = "Address already in use"
_RUNNING: Final = re.compile(r"mosquitto version \S+ running$", re.MULTILINE)


class BrokerUnavailableError(RuntimeError):
    """A tool the broker needs (`mosquitto`, `mosquitto_passwd`, `openssl`) is not installed."""


class BrokerStartError(RuntimeError):
    """`mosquitto` exited, or did not accept connections in time, while starting."""


class _BindError(BrokerStartError):
    """`mosquitto` could not bind one of its ports; starting again may succeed."""


def _find_tool(name: str) -> str | None:
    found = shutil.which(name)
    if found is not None:
        return found
    for directory in _FALLBACK_DIRS:
        candidate = Path(directory) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def find_mosquitto() -> str | None:
    """Return the path of the `mosquitto` binary, or None when it is not installed."""
    return _find_tool("mosquitto")


def _require_tool(name: str) -> str:
    found = _find_tool(name)
    if found is None:
        raise BrokerUnavailableError(
            f"{name!r} not found on PATH or in {', '.join(_FALLBACK_DIRS)}"
        )
    return found


def _free_ports(count: int) -> list[int]:
    """Pick `count` distinct free loopback ports.

    The sockets stay open until all are bound, so that the kernel cannot pick one port twice.
    """
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((HOST, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def _run(argv: list[str], *, cwd: Path) -> None:
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False, timeout=60)
    if result.returncode != 0:
        raise BrokerStartError(
            f"{argv[0]} exited with {result.returncode} in {cwd}: {result.stderr.strip()}"
        )


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _read_from(path: Path, offset: int) -> str:
    """Return the text of `path` from byte `offset` on; empty if there is no such file yet."""
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            return handle.read().decode(errors="replace")
    except FileNotFoundError:
        return ""


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


_CA_EXTENSIONS: Final = """\
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
"""

_LEAF_EXTENSIONS: Final = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = {usage}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
"""


class _Certificates:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate, made by openssl.

    The extensions are the ones Python's `VERIFY_X509_STRICT` (default from 3.13) insists on.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.ca_file = directory / "ca.pem"
        self.server_cert_file = directory / "server.pem"
        self.server_key_file = directory / "server.key"
        self.client_cert_file = directory / "client.pem"
        self.client_key_file = directory / "client.key"
        self._openssl = _require_tool("openssl")
        directory.mkdir(parents=True, exist_ok=True)
        ca_key = directory / "ca.key"
        # `req` reads its extensions from a config section; a minimal config of our own keeps the
        # system openssl.cnf from adding or changing any.
        self._req_config = directory / "req.cnf"
        self._req_config.write_text(
            f"[req]\ndistinguished_name = dn\n[dn]\n[ca_extensions]\n{_CA_EXTENSIONS}"
        )
        self._openssl_run(
            *("req", "-x509", "-new", "-nodes", *self._new_key(ca_key), "-days", "2"),
            *("-subj", "/CN=mqtt-collector test CA", "-out", str(self.ca_file)),
            *("-config", str(self._req_config), "-extensions", "ca_extensions"),
        )
        server_ext = _LEAF_EXTENSIONS.format(usage="serverAuth")
        server_ext += "subjectAltName = IP:127.0.0.1, DNS:localhost\n"
        self._issue("server", server_ext, self.server_cert_file, self.server_key_file, ca_key)
        client_ext = _LEAF_EXTENSIONS.format(usage="clientAuth")
        self._issue("client", client_ext, self.client_cert_file, self.client_key_file, ca_key)

    @staticmethod
    def _new_key(key_file: Path) -> list[str]:
        # EC keys take milliseconds to make; RSA ones noticeably longer on a 2-core machine.
        return [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-keyout",
            str(key_file),
        ]

    def _issue(self, name: str, extensions: str, cert: Path, key: Path, ca_key: Path) -> None:
        csr = self.directory / f"{name}.csr"
        ext_file = self.directory / f"{name}.ext"
        ext_file.write_text(extensions)
        self._openssl_run(
            *("req", "-new", "-nodes", *self._new_key(key), "-subj", f"/CN={name}"),
            *("-config", str(self._req_config), "-out", str(csr)),
        )
        self._openssl_run(
            *("x509", "-req", "-in", str(csr), "-CA", str(self.ca_file), "-CAkey", str(ca_key)),
            *("-CAcreateserial", "-days", "2", "-extfile", str(ext_file), "-out", str(cert)),
        )

    def _openssl_run(self, *args: str) -> None:
        _run([self._openssl, *args], cwd=self.directory)


class Mosquitto:
    """One `mosquitto` process for the tests, on free loopback ports that survive `restart()`.

    Listeners: `port` (plain, anonymous) always; with `tls`, `tls_port` (server certificate only)
    and `mtls_port` (a client certificate is required); with `auth`, `auth_port` (plain, user
    `username` with `password`, anonymous refused). Everything it writes, `log_path` included, is
    in `directory`.

    `extra_conf` is appended at the end of the conf. The conf uses `per_listener_settings true`, so
    security options there (`allow_anonymous`, `password_file`, …) apply to the last listener before
    them; start the text with a `listener` line of your own to configure a listener of your own.
    """

    host: str = HOST
    username: str = USERNAME
    password: str = PASSWORD

    def __init__(
        self,
        *,
        directory: Path | None = None,
        persistence: bool = False,
        tls: bool = False,
        auth: bool = False,
        extra_conf: str = "",
        start_timeout: float = _START_TIMEOUT,
    ) -> None:
        """Prepare the broker's directory, ports, certificates and password file; do not start it.

        Args:
            directory: where to write the conf, log, certificates and persistence file; a new
                temporary directory (left behind for reading the log) when None.
            persistence: save sessions and queued messages to disk, every second and on `stop()`.
            tls: add the TLS and mutual-TLS listeners, with certificates made by `openssl`.
            auth: add the password-protected listener, with a password file made by
                `mosquitto_passwd`.
            extra_conf: appended verbatim to the generated conf.
            start_timeout: seconds `start()` waits for every port to accept connections.

        Raises:
            BrokerUnavailableError: `mosquitto`, or a tool the options need, is not installed.
        """
        self._binary = _require_tool("mosquitto")
        if directory is None:
            directory = Path(tempfile.mkdtemp(prefix="mosquitto-"))
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.persistence = persistence
        self.tls = tls
        self.auth = auth
        self.extra_conf = extra_conf
        self.start_timeout = start_timeout
        self.conf_path = directory / "mosquitto.conf"
        self.log_path = directory / "mosquitto.log"
        # mosquitto's own stdout/stderr: conf errors are printed there before the log file is open.
        self.output_path = directory / "mosquitto.out"
        self._process: subprocess.Popen[bytes] | None = None
        self._output: IO[bytes] | None = None
        self._ever_started = False
        self._certificates = _Certificates(directory / "certs") if tls else None
        self._password_file: Path | None = None
        if auth:
            self._password_file = directory / "passwd"
            passwd = _require_tool("mosquitto_passwd")
            _run(
                [passwd, "-b", "-c", str(self._password_file), self.username, self.password],
                cwd=directory,
            )
        self._pick_ports()

    def __repr__(self) -> str:
        """Show where the broker listens and whether it runs, for assertion messages."""
        state = "running" if self.running else "stopped"
        return f"<Mosquitto {state} {self.host}:{self.port} in {self.directory}>"

    # -- ports and files -------------------------------------------------------------------------

    def _pick_ports(self) -> None:
        self._port, self._tls_port, self._mtls_port, self._auth_port = _free_ports(4)

    @property
    def port(self) -> int:
        """The plain listener, anonymous clients allowed."""
        return self._port

    @property
    def tls_port(self) -> int:
        """The TLS listener (server certificate only, anonymous clients allowed)."""
        self._need("tls", enabled=self.tls)
        return self._tls_port

    @property
    def mtls_port(self) -> int:
        """The mutual-TLS listener: the client must present a certificate signed by `ca_file`."""
        self._need("tls", enabled=self.tls)
        return self._mtls_port

    @property
    def auth_port(self) -> int:
        """The plain listener that requires `username` and `password`."""
        self._need("auth", enabled=self.auth)
        return self._auth_port

    @property
    def ca_file(self) -> Path:
        """The CA certificate that signed the server and client certificates (PEM)."""
        return self._certs().ca_file

    @property
    def cert_file(self) -> Path:
        """The client certificate for the mutual-TLS listener (PEM)."""
        return self._certs().client_cert_file

    @property
    def key_file(self) -> Path:
        """The client certificate's private key (PEM, unencrypted)."""
        return self._certs().client_key_file

    @property
    def ports(self) -> list[int]:
        """Every port this broker listens on, plain first."""
        ports = [self._port]
        if self.tls:
            ports += [self._tls_port, self._mtls_port]
        if self.auth:
            ports.append(self._auth_port)
        return ports

    def _need(self, option: str, *, enabled: bool) -> None:
        if not enabled:
            raise AttributeError(f"{self!r} was made without {option}=True")

    def _certs(self) -> _Certificates:
        self._need("tls", enabled=self._certificates is not None)
        assert self._certificates is not None
        return self._certificates

    def conf_text(self) -> str:
        """Return the conf `start()` writes; listeners are bound to 127.0.0.1 only."""
        lines = [
            "# Written by tests/helpers/mosquitto.py for one test broker.",
            "per_listener_settings true",
            f"log_dest file {self.log_path}",
            *(f"log_type {kind}" for kind in ("error", "warning", "notice", "information")),
            "log_timestamp true",
            "log_timestamp_format %Y-%m-%dT%H:%M:%S",
            "max_queued_messages 100000",
            "max_inflight_messages 20",
        ]
        if os.geteuid() == 0:
            # As root mosquitto switches to the `mosquitto` user, which cannot write into our
            # directory: the log and the persistence file would silently go missing.
            lines.append("user root")
        if self.persistence:
            lines += ["persistence true", f"persistence_location {self.directory}/"]
            lines.append("autosave_interval 1")
        lines += ["", f"listener {self._port} {self.host}", "allow_anonymous true"]
        if self._certificates is not None:
            certs = self._certificates
            tls_lines = [
                f"cafile {certs.ca_file}",
                f"certfile {certs.server_cert_file}",
                f"keyfile {certs.server_key_file}",
                "allow_anonymous true",
            ]
            lines += ["", f"listener {self._tls_port} {self.host}", *tls_lines]
            lines += ["", f"listener {self._mtls_port} {self.host}", *tls_lines]
            lines.append("require_certificate true")
        if self._password_file is not None:
            lines += ["", f"listener {self._auth_port} {self.host}", "allow_anonymous false"]
            lines.append(f"password_file {self._password_file}")
        if self.extra_conf:
            lines += ["", "# extra_conf", self.extra_conf]
        return "\n".join(lines) + "\n"

    # -- lifecycle --------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether the mosquitto process is alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        """The process id while it runs, else None."""
        return self._process.pid if self.running and self._process is not None else None

    def start(self) -> None:
        """Start mosquitto and return once every port accepts TCP connections.

        A port still held by someone else (another process, or a socket of the previous run that
        the kernel has not let go) is retried a few times; before the first successful start the
        ports are picked afresh instead, since nobody can have been told them yet.

        Raises:
            BrokerStartError: mosquitto exited, or did not listen within `start_timeout`; the
                message carries the tail of its log.
        """
        if self.running:
            raise BrokerStartError(f"{self!r} is already running")
        for attempt in range(1, _START_ATTEMPTS + 1):
            try:
                self._start_once()
            except _BindError:
                if attempt == _START_ATTEMPTS:
                    raise
                if not self._ever_started:
                    self._pick_ports()
                time.sleep(0.2 * attempt)
            else:
                self._ever_started = True
                return

    def _start_once(self) -> None:
        self.conf_path.write_text(self.conf_text())
        # Mark where this run starts, so a failure reports this run's lines, not a previous one's.
        offsets = (_size(self.log_path), _size(self.output_path))
        self._output = self.output_path.open("ab")
        self._process = subprocess.Popen(
            [self._binary, "-c", str(self.conf_path)],
            stdin=subprocess.DEVNULL,
            stdout=self._output,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + self.start_timeout
        # mosquitto logs "running" once every listener is bound. A TCP probe alone is not enough:
        # it would be answered by whoever else holds a port that mosquitto then fails to bind.
        while not (_RUNNING.search(_read_from(self.log_path, offsets[0])) and _accepts(self._port)):
            if self._process.poll() is not None:
                self._reap()
                detail = self._failure_detail(offsets)
                error = _BindError if _BIND_FAILURE in detail else BrokerStartError
                raise error(f"mosquitto exited while starting ({self.conf_path}):\n{detail}")
            if time.monotonic() > deadline:
                self._terminate(signal.SIGKILL)
                raise BrokerStartError(
                    f"mosquitto did not start within {self.start_timeout}s "
                    f"({self.conf_path}):\n{self._failure_detail(offsets)}"
                )
            time.sleep(0.02)  # polling: neither a log line nor a listening socket sends an event

    def _failure_detail(self, offsets: tuple[int, int]) -> str:
        log = _read_from(self.log_path, offsets[0]).splitlines()[-_LOG_TAIL_LINES:]
        output = _read_from(self.output_path, offsets[1]).splitlines()[-_LOG_TAIL_LINES:]
        return "\n".join([f"--- {self.output_path} ---", *output, f"--- {self.log_path} ---", *log])

    def stop(self) -> None:
        """Stop mosquitto with SIGTERM and wait, so that it saves its persistence; idempotent."""
        self._terminate(signal.SIGTERM)

    def kill(self) -> None:
        """Kill mosquitto with SIGKILL: changes since the last autosave are lost; idempotent."""
        self._terminate(signal.SIGKILL)

    def restart(self) -> None:
        """Stop, then start again on the same ports."""
        self.stop()
        self.start()

    def _terminate(self, signum: signal.Signals) -> None:
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signum)
            try:
                process.wait(timeout=_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
        self._reap()

    def _reap(self) -> None:
        if self._process is not None:
            self._process.wait()
            self._process = None
        if self._output is not None:
            self._output.close()
            self._output = None

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """Return the last `lines` lines of the broker's log, for failure messages."""
        return "\n".join(_read_from(self.log_path, 0).splitlines()[-lines:])

    def __enter__(self) -> Self:
        """Start the broker."""
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Stop the broker."""
        self.stop()


class MosquittoFactory(Protocol):
    """The `make_mosquitto` fixture: make and start a broker that is stopped at teardown."""

    def __call__(
        self,
        *,
        persistence: bool = False,
        tls: bool = False,
        auth: bool = False,
        extra_conf: str = "",
        start: bool = True,
    ) -> Mosquitto:
        """Make a broker in a fresh directory and, unless `start` is False, start it."""
