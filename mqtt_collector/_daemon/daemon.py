"""The daemon: connect, subscribe, map each message into the queue, ack when processed."""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import random
from typing import TYPE_CHECKING

import structlog

from mqtt_collector._config.broker import Protocol
from mqtt_collector._config.load import load_config
from mqtt_collector._core.event import CollectorEvent
from mqtt_collector._core.queue import CollectorQueue
from mqtt_collector._core.result import Error
from mqtt_collector._daemon.health import Health, health_file
from mqtt_collector._daemon.mapper import Mapper, MappingError
from mqtt_collector._daemon.metrics import Metrics, MetricsServer
from mqtt_collector._daemon.notify import notify
from mqtt_collector._daemon.policy import UnacknowledgedError
from mqtt_collector._daemon.reload import FallbackMapper, ReloadPlan, apply_log_level, plan_reload
from mqtt_collector._daemon.wiring import (
    build_collectors,
    build_filters,
    build_routes,
    build_transport,
    overlapping_filters,
    queue_type,
)
from mqtt_collector._exceptions import (
    ConfigError,
    IncompatibleClientError,
    LifecycleError,
    TransportError,
)
from mqtt_collector._mqtt.transport import ConnectError, suback_reason

if TYPE_CHECKING:
    from collections.abc import Sequence

    from mqtt_collector._config.load import Config
    from mqtt_collector._core.payload import Payload
    from mqtt_collector._daemon.message import Message
    from mqtt_collector._mqtt.transport import Inbound, Transport

__all__ = ["Daemon"]

logger = structlog.get_logger("mqtt_collector.daemon")


class Daemon:
    """One running mqtt-collector: a broker connection feeding a collector queue.

    ``await daemon.run()`` runs until ``daemon.stop()`` (the CLI calls it on SIGTERM and
    SIGINT), then stops reading, processes and acks what was queued (bounded by
    ``queue.drain_timeout``), disconnects and exits the lifecycles. A lifecycle that
    fails at start raises LifecycleError before anything connects.
    """

    def __init__(self, config: Config, *, transport: Transport | None = None) -> None:
        """Build every part from ``config``; nothing runs until ``run()``."""
        self.config = config
        self.metrics = Metrics()
        self.transport: Transport = transport or build_transport(
            config, on_malformed=self.metrics.rejected.labels("malformed").inc
        )
        self.mapper = Mapper(build_routes(config), default_priority=config.queue.default_priority)
        self.transport.on_ack = self.metrics.acked.inc
        q = config.queue
        self.queue = CollectorQueue(
            build_collectors(config, publish=self._publish, on_outcome=self.metrics.outcome),
            min_consumers=q.min_consumers,
            max_consumers=q.max_consumers,
            queue_type=queue_type(q.type),
            default_priority=q.default_priority,
            maxsize=q.maxsize,
        )
        self.metrics.queued.set_function(self.queue.qsize)
        self.metrics.consumers.set_function(lambda: self.queue.consumers)
        self.metrics.unacked.set_function(self.transport.unacked)
        self._filters = build_filters(config)
        self._stopping: asyncio.Event | None = None
        self._stop_requested = False
        self.ready = False  # connected, every filter granted, not flapping: /readyz
        self._connected = False
        self._subscribed = False
        self._refused: dict[str, int] = {}  # filter -> SUBACK code, on this connection
        self.why_not_ready = "not connected"  # what /readyz says while not ready
        self._healthy = False  # the current connection stayed up for _healthy_after()
        self._healthy_timer: asyncio.TimerHandle | None = None
        self._quick_losses = 0  # connections in a row lost before they were healthy
        self._received = 0
        self._unrouted_count = 0  # messages no subscription matched
        self._downgrades: set[tuple[str, int]] = set()  # (filter, QoS granted) warned about
        self._unrouted_keys: set[str] = set()  # topic parents already warned about
        # Only a collector with a dead letter can ask for a message to be left unacked.
        self._may_hold = any(c.dead_letter is not None for c in config.collectors)
        self._redelivery: asyncio.Task[None] | None = None
        self._reloading: asyncio.Task[None] | None = None
        self._reload_again = False

    def stop(self) -> None:
        """Ask the daemon to stop (safe to call from a signal handler, or more than once)."""
        self._stop_requested = True
        if self._stopping is not None:
            self._stopping.set()

    def reload(self) -> asyncio.Task[None] | None:
        """Re-read the config file and apply it in place (the CLI calls it on SIGHUP).

        See ``_daemon/reload.py`` for what is applied and what is refused. A reload asked
        for while one is under way is queued: the file is read again once that one ends
        (any number of requests meanwhile make one more). Return the task applying it, or
        None when the daemon is not running.
        """
        if self._stopping is None or self._stopping.is_set() or not self.queue.running:
            logger.warning("reload ignored: the daemon is not running")
            return None
        if self._reloading is not None and not self._reloading.done():
            self._reload_again = True
            logger.info("reload queued: one is under way")
            return self._reloading
        self._reloading = asyncio.get_running_loop().create_task(
            self._reload_while_asked(), name="reload"
        )
        return self._reloading

    async def _reload_while_asked(self) -> None:
        while True:
            self._reload_again = False
            try:
                await self._reload()
            except Exception:
                logger.exception("reload failed (a bug); the running configuration stays")
            if not self._reload_again or not self.queue.running:
                return

    async def _reload(self) -> None:
        """Read, check and apply the config file once; log what came of it in one line."""
        old = self.config
        try:
            new = load_config(old.path)
        except ConfigError as exc:
            logger.error("reload failed: the running configuration stays", error=str(exc))
            return
        plan = plan_reload(old, new)
        if plan.refused:
            logger.error(
                "reload refused: restart needed; the running configuration stays",
                changed=list(plan.refused),
            )
            return
        if not plan.changed:
            logger.info("reloaded: nothing changed")
            return
        new = new.model_copy(update={"broker": old.broker})  # e.g. the generated client id
        keys = set(plan.added + plan.swapped)
        fresh = [
            c
            for c in build_collectors(new, publish=self._publish, on_outcome=self.metrics.outcome)
            if c.key in keys
        ]
        try:
            await self.queue.swap_collectors(
                add=fresh, remove=plan.removed + plan.swapped, timeout=new.queue.drain_timeout
            )
        except LifecycleError as exc:
            logger.error("reload failed: the running configuration stays", error=str(exc))
            return
        routes = build_routes(new)
        priority = new.queue.default_priority
        self.mapper = (
            FallbackMapper(routes, build_routes(old), default_priority=priority)
            if plan.unsubscribe
            else Mapper(routes, default_priority=priority)
        )
        self.config = new
        self._filters = build_filters(new)
        self._may_hold = any(c.dead_letter is not None for c in new.collectors)
        if "logging.level" in plan.applied:
            apply_log_level(new.logging.level)
        await self._resubscribe(plan)
        if plan.unsubscribe:
            self.mapper = Mapper(routes, default_priority=priority)
        logger.info("reloaded", **plan.summary())

    async def _resubscribe(self, plan: ReloadPlan) -> None:
        """Subscribe and unsubscribe as ``plan`` says, on the current connection.

        Subscribing comes first, so a filter replaced by another has no gap. Once the
        unsubscribe is answered, what the broker sent before it is read (bounded) before
        the caller drops the old routes. Not connected, or the connection lost meanwhile:
        the next connection subscribes the new filters (a persistent session may keep the
        removed ones; their messages are then acked as unrouted).
        """
        if not (plan.subscribe or plan.unsubscribe):
            return
        if not self._connected:
            logger.warning("reload: not connected; the next connection subscribes the filters")
            return
        connection = self.transport.connection
        try:
            async with asyncio.timeout(_RELOAD_SUBSCRIBE):
                if plan.subscribe:
                    self._note_granted(plan.subscribe, await self._request(list(plan.subscribe)))
                if plan.unsubscribe:
                    await self.transport.unsubscribe(list(plan.unsubscribe))
                    for name in plan.unsubscribe:
                        self._refused.pop(name, None)
                    self._update_ready()
                    target = self._received + self.transport.backlog()
                    # The reader counts what it takes; there is no event to wait on.
                    while self._received < target and self._connected:
                        if self.transport.connection != connection:
                            break
                        await asyncio.sleep(_QUIET / 10)
        except (TransportError, TimeoutError) as exc:
            logger.warning(
                "reload: could not change the subscriptions on this connection;"
                " the next connection subscribes the new filters",
                error=str(exc) or f"no answer within {_RELOAD_SUBSCRIBE:g}s",
            )

    def _note_granted(self, asked: Sequence[tuple[str, int]], codes: Sequence[int] | None) -> None:
        """Record the broker's answer to a reload's SUBSCRIBE: refused filters are errors."""
        if codes is None:
            codes = [qos for _, qos in asked]
        for (name, _), code in zip(asked, codes, strict=True):
            if code >= _SUBACK_FAILURE:
                self._refused[name] = code
                self.metrics.subscription_refusals.labels(name).inc()
                logger.error(
                    "subscription refused (asked for again at the next connection)",
                    filter=name,
                    reason=suback_reason(code),
                )
            else:
                self._refused.pop(name, None)
        self._update_ready()

    async def run(self) -> None:
        """Run until stopped; raise LifecycleError or a fatal error after cleaning up."""
        self._stopping = asyncio.Event()
        if self._stop_requested:
            self._stopping.set()
        health = Health(  # /healthz, the status file `health` reads, the systemd watchdog
            health_file(self.config),
            lambda: {
                "connected": self._connected,
                "ready": self.ready,
                "why_not_ready": self.why_not_ready,
            },
        )
        server = self._metrics_server(health)
        health.start()
        fatal: Exception | None = None
        try:
            await self.queue.init_queue()
            logger.info(
                "started",
                collectors=[c.key for c in self.queue.collectors],
                consumers=self.queue.consumers,
                loop=type(asyncio.get_running_loop()).__module__.split(".")[0],
            )
            self._warn_at_start()
            notify("READY=1")
            reader = asyncio.create_task(self._read_forever(), name="mqtt-reader")
            stopping = asyncio.create_task(self._stopping.wait())
            await asyncio.wait({reader, stopping}, return_when=asyncio.FIRST_COMPLETED)
            notify("STOPPING=1")
            stopping.cancel()
            fatal = await self._stop(reader)
            logger.info("stopped")
            if fatal is not None:
                raise fatal
        finally:
            health.stop()
            if server is not None:
                server.stop()

    async def _stop(self, reader: asyncio.Task[None]) -> Exception | None:
        """Stop within one budget set now: ``drain_timeout``, then at most ``_STOP_GRACE``.

        Leaving the share groups takes a slice of the drain time, draining the rest of it.
        Exiting the lifecycles gets what is left of the grace but the disconnect's share, and
        is given up (logged) past it; the disconnect is bounded too. What is not finished
        stays unacked, for the broker to send again. Return the reader's failure (a bug).
        """
        loop = asyncio.get_running_loop()
        drain_timeout = self.config.queue.drain_timeout
        drained_by = loop.time() + drain_timeout
        deadline = drained_by + _STOP_GRACE
        await self._leave_share_groups(reader, min(_LEAVE_SHARE, drain_timeout * _LEAVE_PART))
        fatal = await self._stop_reader(reader)
        remaining = max(0.0, drained_by - loop.time())
        logger.info(
            "draining",
            queued=self.queue.qsize(),
            running=self.queue.busy,
            timeout=round(remaining, 1),
        )
        shutdown = loop.create_task(self.queue.shut_down_queue(timeout=remaining))
        teardown_by = deadline - _DISCONNECT - _CANCEL_WAIT
        await asyncio.wait({shutdown}, timeout=max(0.0, teardown_by - loop.time()))
        if not shutdown.done():
            logger.error(
                "lifecycle teardown did not finish in time: stopping without it",
                waited=round(teardown_by - drained_by, 1),
            )
            shutdown.cancel()
            await asyncio.wait({shutdown}, timeout=_CANCEL_WAIT)
        elif not shutdown.cancelled() and (failure := shutdown.exception()) is not None:
            logger.error("queue shutdown failed", exc_info=failure)
            if fatal is None and isinstance(failure, Exception):
                fatal = failure
        try:
            async with asyncio.timeout(_DISCONNECT):
                if self._redelivery is not None:
                    await self._redelivery  # a disconnect, already under way
                await self.transport.disconnect()
        except TimeoutError:
            logger.warning("disconnect did not finish in time", waited=_DISCONNECT)
        return fatal

    async def _stop_reader(self, reader: asyncio.Task[None]) -> Exception | None:
        """Cancel the reader and wait (bounded) for it; return its failure, if it failed."""
        reader.cancel()
        await asyncio.wait({reader}, timeout=_CANCEL_WAIT)
        if not reader.done():
            logger.warning("the reader did not stop in time: going on without it")
            return None
        failure = None if reader.cancelled() else reader.exception()
        if failure is None:
            return None
        # Still drain and tear down, then report it: an incompatible client library as what
        # it is (the caller says it once), anything else as the bug it is, with its traceback.
        if not isinstance(failure, IncompatibleClientError):
            logger.error("reader failed", exc_info=failure)
        return failure if isinstance(failure, Exception) else None

    async def _leave_share_groups(self, reader: asyncio.Task[None], budget: float) -> None:
        """Unsubscribe from $share filters before stopping, and take what the broker still sends.

        Otherwise the broker goes on sending this member's share to its persistent session
        while it is away, instead of to the members still running. Messages it had already
        given this session (some held back by flow control) keep coming after the
        unsubscribe; they are taken until the stream has been quiet for a moment, or for
        ``budget`` seconds at most (traffic on other filters may never let it be quiet):
        what the broker sends this member after that waits in its session for its return.
        """
        shared = [f for f, _ in self._filters if f.startswith("$share/")]
        if not shared or not (self._connected and self._subscribed) or reader.done():
            return
        loop = asyncio.get_running_loop()
        until = loop.time() + budget
        try:
            async with asyncio.timeout_at(until):
                await self.transport.unsubscribe(shared)
        except (TransportError, TimeoutError) as exc:
            logger.warning(
                "could not leave the share groups",
                filters=shared,
                error=str(exc) or f"no answer within {budget:g}s",
            )
            return
        quiet = False
        while not quiet and not reader.done() and until - loop.time() >= _QUIET:
            seen = self._received
            await asyncio.sleep(_QUIET)
            quiet = seen == self._received and not self.transport.backlog()
        logger.info("left the share groups", filters=shared, quiet=quiet)

    def _metrics_server(self, health: Health) -> MetricsServer | None:
        listen = self.config.metrics.listen
        if listen is None:
            return None
        server = MetricsServer(
            self.metrics,
            listen.host,
            listen.port,
            ready=lambda: self.ready,
            why_not_ready=lambda: self.why_not_ready,
            why_not_live=health.why_not_live,
        )
        server.start()
        logger.info("serving metrics", host=listen.host, port=server.port)
        return server

    def _warn_at_start(self) -> None:
        """Warn about a setup that works, but not as it was probably meant to."""
        for first, second in overlapping_filters(self._filters):
            shared = first.startswith(_SHARE) or second.startswith(_SHARE)
            logger.warning(
                "overlapping subscriptions: a message matching both may arrive twice"
                " (once through the share group)"
                if shared
                else "overlapping subscriptions: a message matching both arrives twice",
                filters=[first, second],
            )
        broker = self.config.broker
        credentials = broker.username is not None or broker.password is not None
        if credentials and broker.tls is None and not _is_loopback(broker.host):
            logger.warning(
                "credentials go in clear text: broker.tls is off and the broker is not on"
                " this host",
                host=broker.host,
                hint="set broker.tls (brokers usually take TLS on port 8883)",
            )

    async def _read_forever(self) -> None:
        """Stay connected and subscribed, backing off until a connection stays healthy.

        The wait between tries grows (exponentially, with full jitter, up to
        ``reconnect.max_delay``) with every try in a row that failed: a connection refused,
        or one lost before it was healthy (up and subscribed for ``_healthy_after()``
        seconds). Two such losses in a row make the daemon unstable: warned about, and not
        ready, until a connection stays up that long.
        """
        broker = self.config.broker
        reconnect = broker.reconnect
        failures = 0  # tries in a row that failed: not connected, or lost before healthy
        attempts = 0  # tries since the last connection was made
        lost = False
        while True:
            attempts += 1
            try:
                info = await self.transport.connect()
            except TransportError as exc:
                failures += 1
                delay = _backoff(failures, reconnect.initial_delay, reconnect.max_delay)
                # One line per state change, then only now and again (1, 2, 4, 8, ... tries).
                if attempts & (attempts - 1) == 0:
                    self._log_connect_failure(exc, attempts=attempts, retry_in=delay)
                await asyncio.sleep(delay)
                continue
            self.metrics.connections.inc()
            session_present = info is not None and info.session_present
            logger.info(
                "reconnected" if lost else "connected",
                host=broker.host,
                port=broker.port,
                client_id=broker.client_id,
                attempts=attempts,
                session_present=session_present,
            )
            attempts = 0
            started = asyncio.get_running_loop().time()
            error = await self._serve(session_present=session_present)
            up_for = asyncio.get_running_loop().time() - started
            # The daemon's own disconnect (to have unacked messages sent again) is no fault.
            ours = not self.transport.connected
            failures = 1 if self._healthy else failures + 1
            if not self._healthy and not ours:
                self._quick_losses += 1
                self._update_ready()
            delay = _backoff(failures, reconnect.initial_delay, reconnect.max_delay)
            self._log_loss(
                error,
                up_for=up_for,
                retry_in=delay,
                reason=None if info is None else info.disconnect_reason,
                ours=ours,
            )
            lost = True
            await self.transport.disconnect()
            await asyncio.sleep(delay)

    def _log_connect_failure(self, exc: TransportError, *, attempts: int, retry_in: float) -> None:
        """Log a failed connect; say what to do when the broker does not speak MQTT 5."""
        fields: dict[str, object] = {
            "error": str(exc),
            "attempts": attempts,
            "retry_in": round(retry_in, 2),
        }
        mqtt5 = self.config.broker.protocol is Protocol.V5
        if mqtt5 and isinstance(exc, ConnectError) and exc.unsupported_protocol:
            logger.error(_NOT_MQTT5, **fields)
            return
        if mqtt5 and isinstance(exc, ConnectError) and exc.timed_out:
            # amqtt and RabbitMQ 3.10 do not answer an MQTT 5 CONNECT at all.
            fields["hint"] = (
                f"a broker that does not speak MQTT 5 may not answer; if so, {_USE_311}"
            )
        log = logger.warning if attempts == 1 else logger.info
        log("cannot connect", **fields)

    def _log_loss(
        self, error: str, *, up_for: float, retry_in: float, reason: int | None, ours: bool
    ) -> None:
        """Log a lost connection; warn when they keep failing, or the session was taken over."""
        fields = {"error": error, "up_for": round(up_for, 1), "retry_in": round(retry_in, 2)}
        if ours:
            logger.info("connection closed to reconnect", **fields)
            return
        quick = 0 if self._healthy else self._quick_losses
        sampled = quick & (quick - 1) == 0  # now and again: 1, 2, 4, 8, ... in a row
        if not quick:
            logger.warning("connection lost", **fields)
        else:
            log = logger.warning if sampled else logger.info
            log("connection lost", lost_in_a_row=quick, **fields)
        if not sampled:
            return
        client_id = self.config.broker.client_id
        twin = (
            f"is another client (a second daemon?) using client_id {client_id!r}? (each"
            " running daemon needs its own client_id: broker.client_id)"
        )
        if reason == _SESSION_TAKEN_OVER:
            logger.warning(
                "session taken over by another client with the same client_id",
                client_id=client_id,
                hint="each running daemon needs its own client_id: broker.client_id",
            )
        if quick >= _FLAPPING:
            if reason is None:
                hint = f"the broker keeps closing the connection soon after accepting it: {twin}"
            elif reason == _SESSION_TAKEN_OVER:
                hint = twin
            else:
                hint = f"the broker disconnects with reason code 0x{reason:02X}: see its log"
            logger.warning(
                "connection unstable: backing off until one stays up",
                lost_in_a_row=quick,
                healthy_after=self._healthy_after(),
                retry_in=round(retry_in, 2),
                hint=hint,
            )

    def _healthy_after(self) -> float:
        """Seconds a connection must stay up and subscribed to be trusted (see README)."""
        return max(_HEALTHY_AFTER, float(self.config.broker.keepalive))

    def _start_healthy_timer(self) -> None:
        if self._healthy_timer is None:
            loop = asyncio.get_running_loop()
            self._healthy_timer = loop.call_later(self._healthy_after(), self._became_healthy)

    def _became_healthy(self) -> None:
        self._healthy_timer = None
        self._healthy = True
        if self._quick_losses >= _FLAPPING:
            logger.info(
                "connection stable again",
                lost_before=self._quick_losses,
                up_for=self._healthy_after(),
            )
        self._quick_losses = 0
        self._update_ready()

    async def _serve(self, *, session_present: bool) -> str:
        """Read, queue and ack messages while subscribing alongside; return why it ended.

        Reading starts at the CONNACK, not at the SUBACK: a broker may send a resumed
        session's queued messages first, and answer the SUBSCRIBE only once they are acked.
        """
        self._connected = True
        self._subscribed = session_present  # the session kept its subscriptions
        self._refused = {}
        self._healthy = False
        if session_present:
            self._start_healthy_timer()
        self._update_ready()
        reader = asyncio.create_task(self._read_messages(), name="mqtt-messages")
        subscriber = asyncio.create_task(self._subscribe(), name="mqtt-subscribe")
        tasks = {reader, subscriber}
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            if self._healthy_timer is not None:
                self._healthy_timer.cancel()
                self._healthy_timer = None
            self._connected = self._subscribed = False
            self._update_ready()
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks)
        lost = "the message stream ended"
        for task in (subscriber, reader):
            failure = None if task.cancelled() else task.exception()
            if failure is None:
                continue
            if not isinstance(failure, TransportError):
                raise failure  # a bug: let run() report it
            lost = str(failure)  # the reader's, if both failed: the connection went
        return lost

    async def _read_messages(self) -> None:
        publisher = self.queue.get_publisher()
        settled = self._settled
        async for inbound in self.transport.messages():
            payload = self._map(inbound)
            if payload is None:
                continue
            event = await publisher.send(payload)
            if inbound.qos:
                event.add_done_callback(functools.partial(settled, inbound))

    async def _subscribe(self) -> None:
        """Subscribe to every filter; ask again for the refused ones, on this connection.

        Reading never waits for it. A refused filter is logged as an error with the broker's
        reason code, counted, shown by /readyz (not ready), and asked for again with the
        reconnect backoff; the filters granted deliver meanwhile.
        """
        reconnect = self.config.broker.reconnect
        wanted = dict(self._filters)
        refusals = 0
        while True:
            asked = list(wanted.items())
            codes = await self._request(asked)
            refused: dict[str, int] = {}
            granted: list[str] = []
            if codes is None:  # a transport that cannot tell: granted as asked
                codes = [qos for _, qos in asked]
            for (name, qos), code in zip(asked, codes, strict=True):
                if code >= _SUBACK_FAILURE:
                    refused[name] = code
                    self.metrics.subscription_refusals.labels(name).inc()
                    continue
                granted.append(name)
                del wanted[name]
                if code < qos and (name, code) not in self._downgrades:
                    self._downgrades.add((name, code))  # once: the broker will not change
                    logger.warning(
                        "subscription granted at a lower QoS than asked",
                        filter=name,
                        asked=qos,
                        granted=code,
                        hint="QoS 0 has no acknowledgement: at most once, a crash loses"
                        " messages (the broker's max_qos or ACL may be the cause)",
                    )
            if granted:
                logger.info("subscribed", filters=granted)
            self._subscribed = True
            self._refused = refused
            self._start_healthy_timer()
            self._update_ready()
            if not refused:
                return
            refusals += 1
            delay = _backoff(refusals, reconnect.initial_delay, reconnect.max_delay)
            if refusals & (refusals - 1) == 0:  # now and again: 1, 2, 4, 8, ... tries
                for name, code in refused.items():
                    logger.error(
                        "subscription refused (the other filters deliver; asked for again)",
                        filter=name,
                        reason=suback_reason(code),
                        attempts=refusals,
                        retry_in=round(delay, 2),
                    )
            await asyncio.sleep(delay)

    async def _request(self, filters: list[tuple[str, int]]) -> Sequence[int] | None:
        """Send one SUBSCRIBE and return the broker's answer, however long it takes.

        A SUBSCRIBE left unanswered for ``_SUBACK_TIMEOUT`` seconds is logged and sent again
        (with backoff) on the same connection; the earlier request may still be answered.
        """
        reconnect = self.config.broker.reconnect
        requests: set[asyncio.Task[Sequence[int] | None]] = set()
        silences = 0
        try:
            while True:
                requests.add(asyncio.create_task(self.transport.subscribe(filters)))
                done, _ = await asyncio.wait(
                    requests, timeout=_SUBACK_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
                )
                if not done:
                    silences += 1
                    delay = _backoff(silences, reconnect.initial_delay, reconnect.max_delay)
                    if silences & (silences - 1) == 0:
                        logger.warning(
                            "no answer to SUBSCRIBE yet: still reading; it will be sent again",
                            filters=[name for name, _ in filters],
                            waited=_SUBACK_TIMEOUT,
                            retry_in=round(delay, 2),
                            attempts=silences,
                        )
                    done, _ = await asyncio.wait(
                        requests, timeout=delay, return_when=asyncio.FIRST_COMPLETED
                    )
                    if not done:
                        continue
                return done.pop().result()
        finally:
            # The other requests are for the same filters: their answers can be ignored.
            for task in requests:
                task.cancel()

    def _update_ready(self) -> None:
        """Set ``ready`` and ``why_not_ready`` (and the gauges) from the connection's state."""
        why = ""
        if self._quick_losses >= _FLAPPING:
            why = (
                f"connection unstable: {self._quick_losses} connections in a row lost within"
                f" {self._healthy_after():g}s of being made; ready once one stays up that long"
            )
        elif not self._connected:
            why = "not connected"
        elif self._refused:
            why = "subscription refused: " + ", ".join(
                f"{name} ({suback_reason(code)})" for name, code in self._refused.items()
            )
        elif not self._subscribed:
            why = "subscribing"
        self.why_not_ready = why
        self.ready = not why
        self.metrics.connected.set(1 if self._connected else 0)
        self.metrics.subscriptions_refused.set(len(self._refused))

    def _map(self, inbound: Inbound) -> Payload[Message] | None:
        """Map one message to its Payload; ack at once (None) what will never reach a collector."""
        self.metrics.received.inc()
        self._received += 1
        try:
            payload = self.mapper.map(inbound)
        except MappingError as exc:
            self.metrics.rejected.labels(exc.reason).inc()
            logger.warning(
                "message refused",
                topic=inbound.topic,
                kind=exc.reason,  # decode, too_large: sampled apart (_logging.LogSampler)
                reason=str(exc),
                size=len(inbound.body),
            )
            self.transport.ack(inbound)
            return None
        if payload is None:
            self.metrics.rejected.labels("unrouted").inc()
            self._unrouted(inbound.topic)
            self.transport.ack(inbound)
        return payload

    def _unrouted(self, topic: str) -> None:
        """Log a message no subscription matches: a warning, sampled; debug otherwise.

        The broker sends nothing the daemon did not subscribe to, so it comes from a
        subscription the persistent session kept after the config dropped it (MQTT offers
        no way to list a session's subscriptions). Warned about for the first message
        under each of ``_UNROUTED_KEYS`` parents (the topic without its last level), and
        again at 10, 100, 1000, ... such messages; every one is counted.
        """
        self._unrouted_count += 1
        count, key = self._unrouted_count, topic.rpartition("/")[0]
        keys = self._unrouted_keys
        first = key not in keys and len(keys) < _UNROUTED_KEYS
        if first:
            keys.add(key)
        elif not _is_power(count, _UNROUTED_AGAIN):
            logger.debug("no subscription matches", topic=topic)
            return
        broker = self.config.broker
        if broker.session.persistent:
            hint = (
                "the broker's persistent session probably holds a subscription the config no"
                " longer has; to drop it, stop the daemon and connect once with client_id"
                f" {broker.client_id!r} and a clean start (broker.session.persistent: false;"
                " the session's queued messages go with it), or unsubscribe from it with"
                " that client_id"
            )
        else:
            hint = "the broker sent a message none of the configured filters matches"
        logger.warning(
            "message matches no subscription: acked and dropped",
            topic=topic,
            unrouted=count,
            hint=hint,
        )

    def _settled(self, inbound: Inbound, event: CollectorEvent) -> None:
        """Ack a message once its collectors are done, or hold it for the broker to resend.

        Held (never acked): a message whose dead letter did not get through (the error policy
        says so with UnacknowledgedError), and work the shutdown gave up on (the queue says
        so: ``event.abandoned``). Any other Error the error policy handled is acked like a
        success. The transport's ledger sends acks in arrival order, so a held message holds
        every later one on its connection too; once nothing before it is left to ack, the
        daemon reconnects so the broker sends them all again soon.
        """
        if event.abandoned:
            self.transport.hold(inbound)
            return
        if not self._may_hold:
            self.transport.ack(inbound)
            return
        results = event.get_result()
        held = results is not None and any(
            isinstance(r, Error) and isinstance(r.exception, UnacknowledgedError) for r in results
        )
        if held:
            self.transport.hold(inbound)
        else:
            self.transport.ack(inbound)
        if self.queue.running:
            self._redeliver_when_blocked()

    def _redeliver_when_blocked(self) -> None:
        """Reconnect once acks on this connection are stuck behind a held message.

        Nothing more would be acked on it: flow control would soon stop reading, for good.
        On the new connection the broker sends every unacked message again, in order.
        """
        transport = self.transport
        if not transport.blocked():
            return
        if self._redelivery is not None and not self._redelivery.done():
            return
        logger.warning(
            "reconnecting to have the unacknowledged messages sent again",
            unacked=transport.unacked(),
        )
        self._redelivery = asyncio.get_running_loop().create_task(
            transport.disconnect(), name="mqtt-redelivery"
        )

    async def _publish(
        self,
        topic: str,
        body: bytes,
        *,
        qos: int,
        retain: bool = False,
        user_properties: list[tuple[str, str]] | None = None,
    ) -> None:
        await self.transport.publish(
            topic, body, qos=qos, retain=retain, user_properties=user_properties or ()
        )


# Seconds a reload may take to change the subscriptions on the current connection.
_RELOAD_SUBSCRIBE = 30.0
# Seconds without a new message after which a member leaving its share group stops reading.
_QUIET = 0.5
# The stop's budget: queue.drain_timeout, then at most _STOP_GRACE seconds more for the
# lifecycles' teardown and the disconnect. The systemd unit's TimeoutStopSec and the
# container's stop timeout cover it (deploy/README.md).
_STOP_GRACE = 10.0
# Of the grace, kept for the disconnect.
_DISCONNECT = 2.0
# Leaving the share groups takes at most _LEAVE_SHARE seconds, and _LEAVE_PART of the drain time.
_LEAVE_SHARE = 5.0
_LEAVE_PART = 0.25
# How long a cancelled task (the reader, an overdue teardown) is waited for.
_CANCEL_WAIT = 0.5
# A connection that stayed up and subscribed this long (or keepalive, if longer: a dead
# connection may go unnoticed that long) is healthy: the reconnect backoff starts over.
_HEALTHY_AFTER = 10.0
# Connections in a row lost before they were healthy that make the daemon unstable.
_FLAPPING = 2
# What to do about a broker that does not speak MQTT 5.
_USE_311 = "set broker.protocol: 3.1.1"
_NOT_MQTT5 = f"cannot connect: the broker does not speak MQTT 5; {_USE_311}"
# MQTT 5 DISCONNECT reason code "Session taken over".
_SESSION_TAKEN_OVER = 0x8E
# Unrouted messages: a warning for the first under each of so many topic parents, then
# at every power of _UNROUTED_AGAIN messages.
_UNROUTED_KEYS = 10
_UNROUTED_AGAIN = 10
_SHARE = "$share/"
# Seconds to wait for a SUBACK before the SUBSCRIBE is logged and sent again.
_SUBACK_TIMEOUT = 10.0
# SUBACK codes from this one up are failures (MQTT 5 §3.9.3; 3.1.1 has 0x80 alone).
_SUBACK_FAILURE = 0x80


def _is_power(count: int, base: int) -> bool:
    """Whether ``count`` is ``base``, ``base**2``, ``base**3``, ..."""
    while count > 1 and count % base == 0:
        count //= base
    return count == 1


def _is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine (``localhost`` or a loopback address)."""
    name = host.strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _backoff(failures: int, initial: float, maximum: float) -> float:
    """Return a delay between ``initial`` and the exponential bound for this try (full jitter)."""
    bound = min(maximum, initial * 2 ** min(failures - 1, 32))
    return random.uniform(initial, max(initial, bound))  # noqa: S311 - jitter, not crypto
