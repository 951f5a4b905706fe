"""End to end: how fast each subscriber receives a live MQTT stream, in one run, on one machine.

Starts its own ``mosquitto`` on a free loopback port with unbounded queues (``max_queued_messages
0``, ``max_inflight_messages 0``). For each subscriber, QoS and round it starts the subscriber as
a process of its own, waits until the broker logs its subscription, then starts the publisher
(``e2e_clients.py publish``, another process writing prebuilt MQTT packets to a socket) flooding
N PUBLISH packets of 120-byte JSON. The rate is N / (the last receipt - the first publish).

Subscribers (``--skip`` takes these keys):

- ``mosquitto_sub``: the C client, printing the bodies to /dev/null and exiting after N (``-C``):
  its exit is its last receipt;
- ``bare-aiomqtt``: ``async for message in client.messages``, counting;
- ``bare-gmqtt``: a gmqtt ``on_message`` callback, counting;
- ``daemon-aiomqtt`` / ``daemon-gmqtt``: ``python -m mqtt_collector run --config ...`` with
  ``broker.client`` set to that transport, a persistent session, ``decode: json`` and one counting
  collector (``e2e_counter.py``); at QoS 1 each message is acked after the collector returns. It
  runs on uvloop when uvloop is importable (the ``uvloop`` extra; the CLI picks it up), and then
  ``daemon-aiomqtt-asyncio`` / ``daemon-gmqtt-asyncio`` run the same with
  ``MQTT_COLLECTOR_UVLOOP=0`` (asyncio's own loop). A transport the config refuses (``check``
  fails) is left out with a note.
- ``daemon-sqlite`` / ``daemon-postgres``: the aiomqtt daemon writing each message with the
  built-in sqlite or postgres collector (a fresh file or table per run, ``queue.max_consumers:
  512`` so that batches can grow) and counting it once its batch is committed. The postgres row
  needs psycopg and the database at ``POSTGRES_DSN`` (default
  ``postgresql://127.0.0.1:5432/test``); its tables are dropped at the end.

Rounds are interleaved and each subscriber keeps its best, since this machine's speed drifts.
Reported per subscriber and QoS: msg/s, the ratio to ``mosquitto_sub`` in the same run, CPU µs per
message (utime + stime of the subscriber process, from /proc, between its subscription and its
Nth message; ``mosquitto_sub`` from wait4, start-up included), the resident set once subscribed
(VmRSS) and its peak (VmHWM, or ru_maxrss for ``mosquitto_sub``) and, in a last pass at a steady
``--latency-rate`` (2,000 msg/s), the latency
p50/p99 (receipt - the send time the publisher stamps in each body, on the shared wall clock).

Run: ``.venv/bin/python benchmarks/e2e_bench.py [--messages 40000] [--rounds 2] [--qos 1 0]``;
with uvloop installed elsewhere: ``PYTHONPATH=/path/to/uvloop/site .venv/bin/python ...``.
Not a test: it prints a Markdown table. With ``E2E_PYSPY=<directory>`` each daemon runs under
``py-spy record`` (collapsed stacks in that directory; CPU figures then include py-spy's own).
Needs ``mosquitto`` and ``mosquitto_sub``.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

HERE = Path(__file__).resolve().parent
CLIENTS = HERE / "e2e_clients.py"
POSTGRES_DSN = os.environ.get("POSTGRES_DSN", "postgresql://127.0.0.1:5432/test")
SINK_CONSUMERS = 512  # queue.max_consumers for the sink rows: batches of up to that many
SINK_OPTIONS: dict[str, dict[str, object]] = {}  # --sink-options: more options per sink
_POLL = 0.005  # seconds between looks at a result file: no event to await across processes
_CLK_TCK = os.sysconf("SC_CLK_TCK")


class SubscriberExitedError(RuntimeError):
    """The subscriber exited before it subscribed (e.g. a transport that cannot start)."""


# -- the broker ------------------------------------------------------------------------------------


class Broker:
    """A private mosquitto with unbounded queues, logging subscriptions to a file we read."""

    def __init__(self, directory: Path) -> None:
        """Start mosquitto on a free port in ``directory``."""
        self.log = directory / "mosquitto.log"
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        conf = directory / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
            "max_queued_messages 0\nmax_queued_bytes 0\nmax_inflight_messages 0\n"
            f"log_dest file {self.log}\nlog_type error\nlog_type warning\nlog_type notice\n"
            "log_type subscribe\n" + ("user root\n" if os.geteuid() == 0 else "")
        )
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.process = subprocess.Popen(  # noqa: S603
            [binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self._wait(self._accepts, "mosquitto did not start")

    def _accepts(self) -> bool:
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", self.port)) == 0

    def _log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def _wait(self, ready: Callable[[], bool], error: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(error)
            time.sleep(_POLL)

    def wait_subscribed(
        self, client_id: str, filter_: str, subscriber: subprocess.Popen[bytes]
    ) -> None:
        """Return once the broker has logged ``client_id``'s subscription to ``filter_``."""
        line_end = f" {client_id} "

        def ready() -> bool:
            if subscriber.poll() is not None:
                raise SubscriberExitedError(f"{client_id} exited with {subscriber.returncode}")
            return any(
                line_end in line and line.endswith(filter_)
                for line in self._log_text().splitlines()
            )

        self._wait(ready, f"{client_id} did not subscribe")

    def stop(self) -> None:
        """Stop mosquitto."""
        self.process.terminate()
        self.process.wait(10)


# -- the subscribers -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Subscriber:
    """One row of the table: how to start it, and whether it is the daemon."""

    key: str
    label: str
    client: str = ""  # the daemon's broker.client; "" for a bare subscriber
    uvloop: bool = True  # the daemon: False sets MQTT_COLLECTOR_UVLOOP=0
    sink: str = ""  # the daemon: a built-in sink written to before counting (sqlite, postgres)


@dataclass
class Sample:
    """One measurement of one subscriber."""

    rate: float
    cpu_us: float
    rss_mb: float
    publisher_rate: float
    lat: list[float] = field(default_factory=list)
    idle_mb: float = 0.0  # the resident set once subscribed, before the flood


@dataclass
class Case:
    """Where one measurement happens: a fresh topic prefix, client id and result file."""

    broker: Broker
    directory: Path
    qos: int
    messages: int
    rate: float  # the publisher's msg/s; 0 floods
    run_id: str

    @property
    def prefix(self) -> str:
        """The topic prefix, new for each measurement."""
        return f"bench/{self.run_id}"

    @property
    def filter(self) -> str:
        """The subscription's topic filter."""
        return f"{self.prefix}/+/temperature"

    @property
    def result(self) -> Path:
        """The subscriber's result file."""
        return self.directory / f"{self.run_id}.json"


def _subscribers(skip: set[str]) -> tuple[list[Subscriber], list[str]]:
    """The subscribers to measure, and notes about those left out."""
    notes: list[str] = []
    have_uvloop = importlib.util.find_spec("uvloop") is not None
    loop = "uvloop" if have_uvloop else "asyncio loop"
    subs = [
        Subscriber("mosquitto_sub", "`mosquitto_sub` (C)"),
        Subscriber("bare-aiomqtt", "bare aiomqtt, `async for message in client.messages`"),
        Subscriber("bare-gmqtt", "bare gmqtt, `on_message` callback"),
    ]
    for client in ("aiomqtt", "gmqtt"):
        subs.append(
            Subscriber(f"daemon-{client}", f"the daemon, {client} transport, {loop}", client)
        )
        if have_uvloop:
            subs.append(
                Subscriber(
                    f"daemon-{client}-asyncio",
                    f"the daemon, {client} transport, asyncio loop",
                    client,
                    uvloop=False,
                )
            )
    for sink in ("sqlite", "postgres"):
        label = f"the daemon, aiomqtt transport, {loop}, {sink} collector"
        subs.append(Subscriber(f"daemon-{sink}", label, "aiomqtt", sink=sink))
    if (why := _postgres_missing()) is not None:
        skip = skip | {"daemon-postgres"}
        notes.append(f"no postgres row: {why}")
    if not have_uvloop:
        notes.append("uvloop is not installed: the daemon ran on asyncio's loop only")
    if importlib.util.find_spec("gmqtt") is None:
        skip = skip | {"bare-gmqtt"}
        notes.append("gmqtt is not installed: no bare gmqtt subscriber")
    return [sub for sub in subs if sub.key not in skip], notes


def _postgres_missing() -> str | None:
    """Why the postgres row cannot run (no psycopg, no database at POSTGRES_DSN), or None."""
    try:
        import psycopg  # noqa: PLC0415 - optional
    except ImportError:
        return "psycopg is not installed (the postgres extra)"
    try:
        psycopg.connect(POSTGRES_DSN, connect_timeout=3).close()
    except psycopg.Error as exc:
        return f"{POSTGRES_DSN} cannot be reached: {str(exc).strip().splitlines()[0]}"
    return None


def _table_name(run_id: str) -> str:
    """The PostgreSQL table of the postgres row's run ``run_id``."""
    return "e2e_" + "".join(c if c.isalnum() else "_" for c in run_id)


def _sink_options(sub: Subscriber, case: Case) -> dict[str, object]:
    """The built-in sink's options: a fresh SQLite file, or a fresh PostgreSQL table."""
    table = _table_name(case.run_id)
    extra = SINK_OPTIONS.get(sub.sink, {})
    if sub.sink == "sqlite":
        return {"path": str(case.directory / f"{case.run_id}.db"), "table": "readings", **extra}
    return {"dsn": POSTGRES_DSN, "table": table, **extra}


def _drop_postgres_tables(directory: Path) -> None:
    """Drop the tables the postgres rows made (named after the runs' files)."""
    if _postgres_missing() is not None:
        return
    import psycopg  # noqa: PLC0415 - optional
    from psycopg import sql  # noqa: PLC0415

    with psycopg.connect(POSTGRES_DSN, autocommit=True) as connection:
        for config in directory.glob("*.yaml"):
            table = _table_name(config.stem)
            connection.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table)))


def _daemon_config(sub: Subscriber, case: Case) -> Path:
    config = case.directory / f"{case.run_id}.yaml"
    options: dict[str, object] = {
        "target": case.messages,
        "result": str(case.result),
        "latency": case.rate > 0,
    }
    collector = 'processor: "e2e_counter:count"'
    queue = ""
    if sub.sink:
        options |= {"sink": sub.sink, "sink_options": _sink_options(sub, case)}
        collector = 'processor: "e2e_counter:sink"\n    lifecycle: "e2e_counter:sink_lifecycle"'
        # A batch is at most as long as there are consumers waiting on it (GroupCommit).
        queue = f"queue: {{max_consumers: {SINK_CONSUMERS}}}\n"
    config.write_text(
        f"""\
broker:
  client: {sub.client}
  host: 127.0.0.1
  port: {case.broker.port}
  client_id: bench-{case.run_id}
  protocol: 5
  session: {{persistent: true, expiry: 60}}
subscriptions:
  - {{filter: "{case.filter}", qos: {case.qos}, decode: json, topics: [reading]}}
collectors:
  - key: count
    {collector}
    topics: [reading]
    options: {json.dumps(options)}
{queue}logging: {{level: warning, format: json}}
"""
    )
    return config


def _daemon_env(sub: Subscriber) -> dict[str, str]:
    env = dict(os.environ)
    # e2e_counter.py (and the e2e_clients.py it imports) are found on PYTHONPATH.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
    if not sub.uvloop:
        env["MQTT_COLLECTOR_UVLOOP"] = "0"
    return env


def refused(sub: Subscriber, broker: Broker, directory: Path) -> str | None:
    """Why ``mqtt-collector check`` refuses the daemon's config for ``sub``, or None."""
    if not sub.client:
        return None
    case = Case(broker, directory, 1, 1, 0, f"check-{sub.key}")
    result = subprocess.run(  # noqa: S603
        [
            sys.executable,
            "-m",
            "mqtt_collector",
            "check",
            "--config",
            str(_daemon_config(sub, case)),
        ],
        env=_daemon_env(sub),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if result.returncode == 0:
        return None
    lines = (result.stdout + result.stderr).strip().splitlines()
    return lines[-1] if lines else f"check exited with {result.returncode}"


def _line_latency(line: str) -> float:
    """Receipt - send time of one ``mosquitto_sub -F '%U %p'`` line."""
    received, body = line.split(maxsplit=1)
    return float(received) - float(json.loads(body)["t"])


def _start(sub: Subscriber, case: Case) -> subprocess.Popen[bytes]:
    """Start ``sub``; its output and errors go to a file beside the result, for post-mortems."""
    client_id = f"bench-{case.run_id}"
    with (case.directory / f"{case.run_id}.out").open("wb") as log:
        if sub.key == "mosquitto_sub":
            argv = ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(case.broker.port), "-V", "5"]
            argv += ["-q", str(case.qos), "-t", case.filter, "-i", client_id]
            argv += ["-C", str(case.messages)]  # it exits after N: wait4 reports its usage
            if not case.rate:  # the flood: bodies to /dev/null, the exit is the last receipt
                return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log)  # noqa: S603
            with case.result.open("wb") as result:  # receipt time and body, for the latency
                return subprocess.Popen([*argv, "-F", "%U %p"], stdout=result, stderr=log)  # noqa: S603
        if sub.client:
            argv = [sys.executable, "-m", "mqtt_collector", "run", "--config"]
            argv.append(str(_daemon_config(sub, case)))
            if profile := os.environ.get("E2E_PYSPY"):  # a directory: py-spy's collapsed stacks
                output = Path(profile) / f"{case.run_id}.txt"
                spy = str(Path(sys.executable).parent / "py-spy")
                argv = [spy, "record", "-r", "250", "-f", "raw", "-o", str(output), "--", *argv]
            return subprocess.Popen(  # noqa: S603
                argv, env=_daemon_env(sub), stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )
        argv = [sys.executable, str(CLIENTS), sub.key.removeprefix("bare-")]
        argv += ["--port", str(case.broker.port), "--messages", str(case.messages)]
        argv += ["--qos", str(case.qos), "--filter", case.filter, "--client-id", client_id]
        argv += ["--result", str(case.result), *(["--latency"] if case.rate else [])]
        return subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=log, stderr=log)  # noqa: S603


def _publish(case: Case) -> subprocess.Popen[str]:
    argv = [sys.executable, str(CLIENTS), "publish", "--port", str(case.broker.port)]
    argv += ["--messages", str(case.messages), "--qos", str(case.qos)]
    argv += ["--prefix", case.prefix, "--rate", str(case.rate)]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)  # noqa: S603


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK  # utime, stime


def _rss_mb(pid: int, field: str = "VmHWM") -> float:
    """The process's peak (VmHWM) or current (VmRSS) resident set, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _wait_until(done: Callable[[], bool], process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if process.poll() is not None:
            raise RuntimeError(f"the subscriber exited with {process.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"no result after {timeout:.0f} s")
        time.sleep(_POLL)


def measure(sub: Subscriber, case: Case) -> Sample:
    """Start ``sub``, publish ``case.messages`` to it and measure until it has them all."""
    process = _start(sub, case)
    try:
        case.broker.wait_subscribed(f"bench-{case.run_id}", case.filter, process)
        cpu_start = _cpu_seconds(process.pid)
        idle = 0.0 if sub.key == "mosquitto_sub" else _rss_mb(process.pid, "VmRSS")
        publisher = _publish(case)
        timeout = 60 + case.messages / 1000
        if sub.key == "mosquitto_sub":
            _, status, usage = os.wait4(process.pid, 0)
            last = time.time()
            process.returncode = os.waitstatus_to_exitcode(status)
            cpu, rss = usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024
            lat = []
            if case.rate:
                lines = case.result.read_text().splitlines()
                last = float(lines[-1].split()[0])
                lat = [_line_latency(line) for line in lines]
        else:
            _wait_until(case.result.exists, process, timeout)
            cpu, rss = _cpu_seconds(process.pid) - cpu_start, _rss_mb(process.pid)
            found = json.loads(case.result.read_text())
            last, lat = found["last"], found["lat"]
        out, _ = publisher.communicate(timeout=timeout)
        sent = json.loads(out)
    finally:
        _stop(process)
    return Sample(
        rate=case.messages / (last - sent["first"]),
        cpu_us=cpu / case.messages * 1e6,
        rss_mb=rss,
        idle_mb=idle,
        publisher_rate=case.messages / (sent["broker_done"] - sent["first"]),
        lat=lat,
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        if process.stdin is not None:
            process.stdin.close()  # a bare subscriber exits when its stdin closes
        else:
            # the daemon drains and exits on SIGTERM; py-spy writes its profile on SIGINT
            process.send_signal(signal.SIGINT if os.environ.get("E2E_PYSPY") else signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# -- the run ---------------------------------------------------------------------------------------


@dataclass
class Best:
    """A subscriber's best flood sample per QoS, its peak RSS and its latency per QoS."""

    flood: dict[int, Sample] = field(default_factory=dict)
    rss_mb: float = 0.0
    idle_mb: float = 0.0
    latency: dict[int, list[float]] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _fmt_flood(best: Best, qos: int, reference: Sample | None) -> list[str]:
    sample = best.flood.get(qos)
    if sample is None:
        return ["-", "-", "-"]
    ratio = f"{sample.rate / reference.rate:.2f}" if reference is not None else "-"
    return [f"{sample.rate:,.0f}", ratio, f"{sample.cpu_us:.1f}"]


def _fmt_latency(best: Best, qos: int) -> str:
    lat = best.latency.get(qos)
    if not lat:
        return "-"
    return f"{_percentile(lat, 0.5) * 1e3:.2f} / {_percentile(lat, 0.99) * 1e3:.2f}"


def print_table(subs: list[Subscriber], results: dict[str, Best], qoses: list[int]) -> None:
    """Print the Markdown table."""
    header = ["subscriber"]
    for qos in qoses:
        header += [f"QoS {qos} msg/s", "ratio", "CPU µs/msg"]
    header += ["RSS subscribed → peak", *(f"QoS {qos} latency p50 / p99 ms" for qos in qoses)]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    reference = results.get("mosquitto_sub", Best()).flood
    for sub in subs:
        best = results[sub.key]
        row = [sub.label]
        for qos in qoses:
            row += _fmt_flood(best, qos, reference.get(qos))
        idle = f"{best.idle_mb:.0f} → " if best.idle_mb else ""
        row.append(f"{idle}{best.rss_mb:.0f} MB" if best.rss_mb else "-")
        row += [_fmt_latency(best, qos) for qos in qoses]
        print("| " + " | ".join(row) + " |")


def publisher_alone(broker: Broker, directory: Path, n: int, qos: int) -> float:
    """Msg/s the publisher gets through the broker with nobody subscribed."""
    case = Case(broker, directory, qos, n, 0, f"alone-q{qos}")
    out, _ = _publish(case).communicate(timeout=60 + n / 1000)
    sent = json.loads(out)
    return float(n / (sent["broker_done"] - sent["first"]))


def _summary(sample: Sample, rate: float) -> str:
    if rate:
        return f"p99 {_percentile(sample.lat, 0.99) * 1e3:.2f} ms"
    return f"{sample.rate:,.0f} msg/s, {sample.cpu_us:.1f} µs/msg, {sample.rss_mb:.0f} MB"


def run_passes(
    args: argparse.Namespace,
    subs: list[Subscriber],
    results: dict[str, Best],
    broker: Broker,
    directory: Path,
) -> None:
    """The flood rounds, interleaved, then the latency pass; each subscriber keeps its best."""
    counter = itertools.count()
    passes = [(r, qos, args.messages, 0.0) for r in range(args.rounds) for qos in args.qos]
    if args.latency_messages:
        passes += [(-1, qos, args.latency_messages, args.latency_rate) for qos in args.qos]
    dead: set[str] = set()  # exited before subscribing: not tried again
    for _round, qos, n, rate in passes:
        for sub in subs:
            if sub.key in dead:
                continue
            case = Case(broker, directory, qos, n, rate, f"{sub.key}-{next(counter)}")
            best = results[sub.key]
            what = f"{sub.key}, QoS {qos}, {'latency' if rate else 'flood'}"
            try:
                sample = measure(sub, case)
            except SubscriberExitedError as exc:
                dead.add(sub.key)
                out = (directory / f"{case.run_id}.out").read_text(errors="replace").splitlines()
                best.failed.append(
                    f"{sub.key} exited before subscribing: {out[-1] if out else exc}"
                )
                print(f"{what}: failed: {exc}", file=sys.stderr, flush=True)
                continue
            except (RuntimeError, subprocess.TimeoutExpired, ValueError, OSError) as exc:
                best.failed.append(f"{what}: {exc} (see {case.run_id}.out)")
                print(f"{what}: failed: {exc}", file=sys.stderr, flush=True)
                continue
            print(f"{what}: {_summary(sample, rate)}", file=sys.stderr, flush=True)
            best.rss_mb = max(best.rss_mb, sample.rss_mb)
            best.idle_mb = max(best.idle_mb, sample.idle_mb)
            if rate:
                best.latency[qos] = sample.lat
            elif qos not in best.flood or sample.rate > best.flood[qos].rate:
                best.flood[qos] = sample


def main() -> None:
    """Measure every subscriber, interleaved, and print the table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=40_000, help="per flood (40,000)")
    parser.add_argument("--rounds", type=int, default=2, help="flood rounds; best kept (2)")
    parser.add_argument("--qos", type=int, nargs="+", choices=[0, 1], default=[1, 0])
    parser.add_argument("--skip", default="", help="comma-separated subscriber keys to leave out")
    parser.add_argument("--latency-rate", type=float, default=2000, help="msg/s (2,000)")
    parser.add_argument(
        "--latency-messages", type=int, default=6000, help="per latency pass; 0 skips it (6,000)"
    )
    parser.add_argument("--keep", help="work in this directory and leave its files (logs) there")
    parser.add_argument(
        "--sink-options",
        type=json.loads,
        default={},
        help='more options for the sink rows, as JSON: \'{"postgres": {"pool_size": 1}}\'',
    )
    args = parser.parse_args()
    SINK_OPTIONS.update(args.sink_options)
    subs, notes = _subscribers({key.strip() for key in args.skip.split(",") if key.strip()})
    results = {sub.key: Best() for sub in subs}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="e2e-bench-") as tmp:
        directory = Path(args.keep or tmp)
        directory.mkdir(parents=True, exist_ok=True)
        broker = Broker(directory)
        try:
            for sub in list(subs):
                why = refused(sub, broker, directory)
                if why is not None:
                    notes.append(f"{sub.key} left out, its config is refused: {why}")
                    subs.remove(sub)
            alone = {
                qos: publisher_alone(broker, directory, args.messages, qos) for qos in args.qos
            }
            run_passes(args, subs, results, broker, directory)
        finally:
            broker.stop()
            _drop_postgres_tables(directory)
    elapsed = time.monotonic() - started
    print(
        f"\nPython {sys.version.split()[0]}, {os.cpu_count()} CPUs; {args.messages:,} messages of"
        f" 120-byte JSON per flood, best of {args.rounds} interleaved rounds; latency at a steady"
        f" {args.latency_rate:,.0f} msg/s over {args.latency_messages:,} messages;"
        f" {elapsed:.0f} s in all.\n"
    )
    print_table(subs, results, args.qos)
    print()
    for qos, rate in alone.items():
        during = [
            s.publisher_rate for b in results.values() for q, s in b.flood.items() if q == qos
        ]
        print(
            f"publisher, QoS {qos}: {rate:,.0f} msg/s into the broker with no subscriber;"
            f" {max(during, default=0):,.0f} msg/s at best during the floods"
        )
    for note in notes:
        print(f"note: {note}")
    for sub in subs:
        for failure in results[sub.key].failed:
            print(f"failed: {failure}")


if __name__ == "__main__":
    main()
