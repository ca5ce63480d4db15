"""MQTT 5 bus (Mosquitto) for webapp and coreapp running as separate processes.

Request/reply uses the standard MQTT 5 ``ResponseTopic`` and ``CorrelationData`` properties, QoS 1 and a
persistent session (``clean_start=False`` plus a ``SessionExpiryInterval``, or the broker drops what was
queued for us while we were away).  Topics, for bus instance ``I``:

- requests ``openprem/I/rpc/req``: the serving node subscribes to it directly.  ``shared_subscription=True``
  subscribes through ``$share/coreapp/...`` instead, for several coreapps later; it is off by default
  because Mosquitto 2.0.11 (Debian 12) does not restore shared subscriptions from its persistence file:
  after a broker restart, requests sent before the coreapp has re-subscribed are dropped (measured);
- replies ``openprem/I/rpc/resp/<node_id>``: every node subscribes to its own;
- node state ``openprem/I/node/<node_id>``: retained, with a last-will ``{"state": "gone"}``;
- multiconnect routes ``openprem/I/rpc/<route>/req`` (``master``, ``shard/<n>``): only the node holding that
  route's lease subscribes (``add_route`` / ``remove_route``); webapps pick the route and learn who holds what
  from the retained node states (``watch_nodes``).  Never ``$share``: a lease, not the broker, decides.

Behaviour worth knowing (see ``docs/contracts.md`` §3 and the dependency notes on aiomqtt):

- aiomqtt does not reconnect by itself.  One connection task reuses one ``aiomqtt.Client`` forever, with
  jittered exponential backoff (0.2 s doubling to 5 s).  Reusing the client keeps paho's queue of unacked
  QoS 1 publishes, which paho resends after the reconnect, and aiomqtt's queue of received messages.
  Subscriptions and the node state are renewed after every connect.
- ``start()`` waits up to ``start_timeout_s`` for the first connection and raises
  ``BusUnavailableError`` if the broker cannot be reached (or refuses our credentials), so a misconfigured
  process fails at start.
- The broker authenticates us with ``mqtt_username``/``mqtt_password`` (a secret: never logged) and, with
  ``mqtt_tls``, over TLS checked against ``mqtt_ca_file`` (or the system CAs) and the host name.  What each
  identity may publish and read is the broker's ACL (``conf/mosquitto.acl``), not ours to enforce.
- ``request()`` on a disconnected bus waits at most ``reconnect_grace_s`` (bounded by its own timeout)
  for the connection to come back, then fails with ``NOT_READY``; it never queues a request while
  disconnected.  Requests already sent survive a short broker loss (the session keeps the reply), but
  once the bus has been disconnected for ``reconnect_grace_s`` they fail with ``NOT_READY`` too.
- Every request carries a ``MessageExpiryInterval`` equal to its timeout, so the broker drops a request
  nobody picked up in time, and the server bounds the handler by what is left of it.  A request that
  reaches a server after the caller has given up can still run: handlers must be idempotent (paho also
  acks before our handler runs, so durable state belongs in the database, never only on the bus).
- Replies for unknown correlation ids (late, or duplicated by QoS 1) are ignored; a request whose
  correlation id was already seen recently is not run again.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
import random
import re
import socket
import ssl
import uuid
from typing import Any

import aiomqtt
import orjson
import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from shared.bus.base import Bus, NodeWatcher, Payload, RawHandler
from shared.bus.rpc import error_body, ok_body, parse_reply, parse_request, request_body
from shared.config import BusSettings
from shared.errors import ApiError, ErrorCode
from shared.tasks import TaskSupervisor

log = logging.getLogger("openprem.bus.mqtt")

BACKOFF_MIN_S = 0.2
BACKOFF_MAX_S = 5.0
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_GONE = orjson.dumps({"state": "gone"})
_SEEN_MAX = 10_000
ROUTES_CLAIMED_BY_LEASE = ("master", *(f"shard/{n}" for n in range(32)))
"""Every route a multiconnect node may serve under a lease (``shared.shards.SHARD_SPACE`` shards at most)."""


class BusUnavailableError(ConnectionError):
    """The MQTT broker could not be reached when the bus started."""


def _properties(packet_type: int, **values: Any) -> Properties:
    """paho's ``Properties`` is untyped and set by attribute name; build it in one typed place."""
    props = Properties(packet_type)  # type: ignore[no-untyped-call]
    for name, value in values.items():
        setattr(props, name, value)
    return props


async def _cancel_and_wait(tasks: set[asyncio.Task[Any]], timeout_s: float) -> None:
    """Cancel until done.  On Python 3.11 ``asyncio.wait_for`` (used throughout aiomqtt) swallows a cancel
    that arrives as its inner future completes, so a single ``cancel()`` can be lost (seen in tests)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    pending = {task for task in tasks if not task.done()}
    while pending and loop.time() < deadline:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=min(0.2, max(0.0, deadline - loop.time())))
    if pending:
        log.warning("mqtt: %d tasks did not stop within %.0fs", len(pending), timeout_s)


def tls_context(settings: BusSettings) -> ssl.SSLContext | None:
    """The client's TLS context (``None`` without ``mqtt_tls``); it reads the CA file, so call it off the loop."""
    if not settings.mqtt_tls:
        return None
    cafile = str(settings.mqtt_ca_file) if settings.mqtt_ca_file is not None else None
    try:
        context = ssl.create_default_context(cafile=cafile)
    except (OSError, ValueError) as exc:
        raise BusUnavailableError(f"MQTT CA file {cafile}: {exc}") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class MqttBus(Bus):
    """``Bus`` over MQTT 5; one instance per process, identified by a stable ``node_id``."""

    def __init__(
        self,
        settings: BusSettings,
        node_id: str,
        supervisor: TaskSupervisor | None = None,
        *,
        start_timeout_s: float = 10.0,
        reconnect_grace_s: float = 2.0,
        max_in_flight: int = 256,
        session_expiry_s: int = 3600,
        keepalive_s: int = 15,
        shared_subscription: bool = False,
        replies: bool = True,
        default_route: bool = True,
    ) -> None:
        """``replies``: subscribe to this node's reply topic (a node that never calls need not, and the broker's
        ACL lets a multiconnect coreapp read none); ``default_route``: a server also takes the single-coreapp
        request topic (off in multiconnect, where requests come by route)."""
        if not _NAME.match(node_id):
            raise ValueError(f"node id {node_id!r} must match {_NAME.pattern}")
        self._settings = settings
        self.node_id = node_id
        self.client_id = f"openprem-{settings.instance}-{node_id}"
        base = f"openprem/{settings.instance}"
        self.request_topic = f"{base}/rpc/req"
        self.reply_topic = f"{base}/rpc/resp/{node_id}"
        self.state_topic = f"{base}/node/{node_id}"
        self._request_filter = f"$share/coreapp/{self.request_topic}" if shared_subscription else self.request_topic
        self._base = base
        self._replies = replies
        self._default_route = default_route
        self._routes: dict[str, str] = {}  # request topic -> route, of the routes served now
        self._node_watcher: NodeWatcher | None = None
        self._node_filter = f"{base}/node/+"

        self._owns_supervisor = supervisor is None
        self._supervisor = supervisor or TaskSupervisor(f"bus-{node_id}")
        self._start_timeout = start_timeout_s
        self._grace = reconnect_grace_s
        self._max_in_flight = max_in_flight
        self._session_expiry = session_expiry_s
        self._keepalive = keepalive_s

        self._handler: RawHandler | None = None
        self._serving = True
        self._client: aiomqtt.Client | None = None
        self._running = False
        self._connected = asyncio.Event()
        self._connection_task: asyncio.Task[Any] | None = None
        self._handler_tasks: set[asyncio.Task[Any]] = set()
        self._in_flight = asyncio.Semaphore(max_in_flight)
        self._pending: dict[bytes, asyncio.Future[bytes]] = {}
        self._pending_routes: dict[bytes, str] = {}  # correlation -> route, of requests sent by route
        self._seen: collections.OrderedDict[bytes, None] = collections.OrderedDict()
        self._state: Payload = {"state": "up"}
        self._last_error = "not connected yet"

    # -- Bus -------------------------------------------------------------------------------------------

    def serve(self, handler: RawHandler) -> None:
        self._handler = handler
        self._serving = True

    async def unserve(self) -> None:
        """Answer new requests 1011 at once and wait (5 s at most) for the ones being handled."""
        self._serving = False
        if self._handler_tasks:
            await asyncio.wait(set(self._handler_tasks), timeout=5.0)

    async def start(self) -> None:
        """Connect, subscribe and publish the node state; raise ``BusUnavailableError`` if we cannot."""
        if self._running:
            return
        self._client = self._make_client(await asyncio.to_thread(tls_context, self._settings))
        self._running = True
        self._connection_task = self._supervisor.spawn("mqtt-connection", self._connection_loop(self._client))
        try:
            async with asyncio.timeout(self._start_timeout):
                await self._connected.wait()
        except TimeoutError:
            error = self._last_error
            await self.stop()
            host, port = self._settings.mqtt_host, self._settings.mqtt_port
            raise BusUnavailableError(
                f"MQTT broker {host}:{port} not reachable within {self._start_timeout:.0f}s: {error}"
            ) from None
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Mark the node gone, cancel handlers and the connection, and fail pending requests."""
        if not self._running:
            return
        self._running = False
        client = self._client
        if client is not None and self._connected.is_set():
            with contextlib.suppress(aiomqtt.MqttError):
                await client.publish(self.state_topic, _GONE, qos=1, retain=True, timeout=2.0)
        await _cancel_and_wait(self._handler_tasks, 5.0)
        if self._connection_task is not None:
            await _cancel_and_wait({self._connection_task}, 10.0)
            self._connection_task = None
        self._connected.clear()
        self._fail_pending("message bus stopped")
        self._client = None
        if self._owns_supervisor:
            await self._supervisor.close()
            self._supervisor = TaskSupervisor(f"bus-{self.node_id}")

    def route_topic(self, route: str | None) -> str:
        """The request topic of ``route`` (``None``: the single coreapp's)."""
        if route is None:
            return self.request_topic
        if not all(_NAME.match(part) for part in route.split("/")):
            raise ValueError(f"bad route {route!r}")
        return f"{self._base}/rpc/{route}/req"

    async def add_route(self, route: str) -> None:
        topic = self.route_topic(route)
        self._routes[topic] = route
        client = self._client
        if client is not None and self._connected.is_set():
            await self._subscribe(client, topic)

    async def remove_route(self, route: str) -> None:
        topic = self.route_topic(route)
        if self._routes.pop(topic, None) is None:
            return
        client = self._client
        if client is not None and self._connected.is_set():
            try:
                await client.unsubscribe(topic, timeout=5.0)
            except aiomqtt.MqttError as exc:
                # Requests that still arrive are refused by the handler (it checks the lease, not the topic).
                log.warning("mqtt: could not unsubscribe from %s: %s", topic, exc)

    def watch_nodes(self, callback: NodeWatcher) -> None:
        self._node_watcher = callback

    def abandon_route(self, route: str, reason: str) -> int:
        """Fail the requests waiting on ``route`` now with 1011 (their server is gone: a request the broker still
        holds for it would wait its whole timeout); how many.  Whether a request was served before is unknown, so
        the answer is "not ready", and a client retries with its ``Idempotency-Key``."""
        failed = 0
        for correlation, pending_route in list(self._pending_routes.items()):
            future = self._pending.get(correlation)
            if pending_route == route and future is not None and not future.done():
                future.set_exception(ApiError(ErrorCode.NOT_READY, reason))
                failed += 1
        return failed

    async def request_raw(
        self, method: str, payload: bytes, timeout_s: float | None = None, route: str | None = None
    ) -> bytes:
        topic = self.route_topic(route)
        if not self._running or self._client is None:
            raise ApiError(ErrorCode.NOT_READY, "message bus is not running")
        client = self._client
        timeout = timeout_s or self._settings.rpc_timeout_s
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        body = request_body(method, payload)
        correlation = uuid.uuid4().bytes
        future: asyncio.Future[bytes] = loop.create_future()
        self._pending[correlation] = future
        if route is not None:
            self._pending_routes[correlation] = route
        try:
            async with asyncio.timeout_at(deadline):
                if not self._connected.is_set():
                    try:
                        async with asyncio.timeout(self._grace):
                            await self._connected.wait()
                    except TimeoutError:
                        raise ApiError(ErrorCode.NOT_READY, "message bus is not connected") from None
                props = _properties(
                    PacketTypes.PUBLISH,
                    ResponseTopic=self.reply_topic,
                    CorrelationData=correlation,
                    MessageExpiryInterval=max(1, math.ceil(deadline - loop.time())),
                )
                try:
                    await client.publish(topic, body, qos=1, properties=props, timeout=math.inf)
                except aiomqtt.MqttCodeError as exc:
                    # Lost the connection just now: paho keeps the QoS 1 message and sends it on reconnect.
                    if exc.rc != paho.MQTT_ERR_NO_CONN:
                        raise
                reply = await future
        except TimeoutError:
            raise ApiError(ErrorCode.NOT_READY, "coreapp did not answer in time") from None
        except aiomqtt.MqttError as exc:
            raise ApiError(ErrorCode.NOT_READY, f"message bus error: {exc}") from None
        finally:
            self._pending.pop(correlation, None)
            self._pending_routes.pop(correlation, None)
        return parse_reply(reply)

    # -- node state --------------------------------------------------------------------------------------

    async def publish_state(self, state: Payload) -> None:
        """Publish this node's state (retained); it is republished after every reconnect."""
        self._state = dict(state)
        client = self._client
        if client is None or not self._connected.is_set():
            return
        try:
            await client.publish(self.state_topic, orjson.dumps(self._state), qos=1, retain=True, timeout=5.0)
        except aiomqtt.MqttError as exc:
            log.warning("could not publish node state (will retry on reconnect): %s", exc)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    # -- connection ------------------------------------------------------------------------------------

    def _make_client(self, tls: ssl.SSLContext | None) -> aiomqtt.Client:
        connect_props = _properties(PacketTypes.CONNECT, SessionExpiryInterval=self._session_expiry)
        client = aiomqtt.Client(
            self._settings.mqtt_host,
            self._settings.mqtt_port,
            username=self._settings.mqtt_username or None,
            password=self._settings.mqtt_password or None,
            tls_context=tls,
            identifier=self.client_id,
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=False,
            properties=connect_props,
            will=aiomqtt.Will(self.state_topic, _GONE, qos=1, retain=True),
            keepalive=self._keepalive,
            timeout=5.0,
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        )
        # aiomqtt warns from 10 pending publishes on; bursts of concurrent requests are normal here (paho sends
        # 20 at a time and queues the rest), so only warn at a backlog that means real overload.
        client.pending_calls_threshold = 10_000
        return client

    async def _connection_loop(self, client: aiomqtt.Client) -> None:
        """Connect, serve, and reconnect forever with capped jittered backoff until cancelled."""
        loop = asyncio.get_running_loop()
        current = asyncio.current_task()
        assert current is not None
        failures = 0  # failed attempts since the last successful connection
        down_since = loop.time()
        while True:
            session_up = False
            try:
                async with client:
                    await self._on_connect(client)
                    session_up = True
                    if failures:
                        log.info("mqtt: connected to %s after %d failed attempts", self._where(), failures)
                    else:
                        user = self._settings.mqtt_username or "anonymous"
                        log.info("mqtt: connected to %s as %s (user %s)", self._where(), self.client_id, user)
                    failures = 0
                    self._connected.set()
                    async for message in client.messages:
                        if not self._running:
                            break
                        await self._dispatch(client, message)
            except aiomqtt.MqttError as exc:
                self._last_error = str(exc) or type(exc).__name__
            except Exception as exc:
                self._last_error = repr(exc)
                log.exception("mqtt: connection loop error")
            finally:
                self._connected.clear()
            # aiomqtt's __aexit__ can raise MqttError from a graceful disconnect and so swallow our cancel.
            if not self._running or current.cancelling():
                return
            if session_up:
                down_since = loop.time()
                log.warning("mqtt: lost connection to %s: %s; reconnecting", self._where(), self._last_error)
            else:
                failures += 1
                if failures == 1 or failures % 20 == 0:
                    log.warning(
                        "mqtt: cannot connect to %s (%d attempts): %s", self._where(), failures, self._last_error
                    )
            if self._pending and loop.time() - down_since >= self._grace:
                self._fail_pending("message bus is not connected")
            delay = min(BACKOFF_MAX_S, BACKOFF_MIN_S * 2 ** min(failures, 10))
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))

    async def _on_connect(self, client: aiomqtt.Client) -> None:
        """(Re)subscribe and republish the node state; idempotent, so done on every connect."""
        filters = [self.reply_topic] if self._replies else []
        if self._handler is not None and self._default_route:
            filters.append(self._request_filter)
        if self._handler is not None and not self._default_route:
            # The persistent session may still hold routes of an earlier incarnation (a SIGKILLed owner that
            # restarts as a standby) or ones we could not unsubscribe from while disconnected: drop them first,
            # or this node would receive, and refuse, requests that belong to another.
            stale = [t for t in (self.route_topic(r) for r in ROUTES_CLAIMED_BY_LEASE) if t not in self._routes]
            await client.unsubscribe(stale, timeout=5.0)
        filters.extend(self._routes)
        if self._node_watcher is not None:
            filters.append(self._node_filter)
        for topic in filters:
            await self._subscribe(client, topic)
        await client.publish(self.state_topic, orjson.dumps(self._state), qos=1, retain=True, timeout=5.0)

    @staticmethod
    async def _subscribe(client: aiomqtt.Client, topic: str) -> None:
        codes = await client.subscribe(topic, qos=1, timeout=5.0)
        if any((code.value if isinstance(code, ReasonCode) else code) >= 0x80 for code in codes):
            raise aiomqtt.MqttError(f"subscription to {topic} refused: {codes}")

    def _where(self) -> str:
        tls = " (TLS)" if self._settings.mqtt_tls else ""
        return f"{self._settings.mqtt_host}:{self._settings.mqtt_port}{tls}"

    def _fail_pending(self, reason: str) -> None:
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(ApiError(ErrorCode.NOT_READY, reason))

    # -- incoming --------------------------------------------------------------------------------------

    async def _dispatch(self, client: aiomqtt.Client, message: aiomqtt.Message) -> None:
        topic = message.topic.value
        raw = message.payload if isinstance(message.payload, bytes | bytearray | str) else b""
        if topic == self.reply_topic:
            self._on_reply(message.properties, raw)
        elif (topic == self.request_topic or topic in self._routes) and self._handler is not None:
            await self._on_request(client, self._handler, message.properties, raw)
        elif self._node_watcher is not None and topic.startswith(self._base + "/node/"):
            self._on_node_state(topic.rsplit("/", 1)[1], raw)
        else:
            log.debug("mqtt: ignoring message on %s", topic)

    def _on_node_state(self, node: str, raw: bytes | bytearray | str) -> None:
        watcher = self._node_watcher
        assert watcher is not None
        try:
            state = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            log.warning("mqtt: ignoring malformed state of node %s", node)
            return
        if not isinstance(state, dict) or state.get("state") == "gone":
            state = None
        watcher(node, state)

    def _on_reply(self, props: Properties | None, raw: bytes | bytearray | str) -> None:
        correlation = getattr(props, "CorrelationData", None)
        future = self._pending.pop(correlation, None) if isinstance(correlation, bytes) else None
        if future is None or future.done():
            log.debug("mqtt: ignoring late or duplicate reply")
            return
        future.set_result(raw.encode() if isinstance(raw, str) else bytes(raw))

    async def _on_request(
        self, client: aiomqtt.Client, handler: RawHandler, props: Properties | None, raw: bytes | bytearray | str
    ) -> None:
        response_topic = getattr(props, "ResponseTopic", None)
        correlation = getattr(props, "CorrelationData", None)
        if not isinstance(response_topic, str) or not isinstance(correlation, bytes):
            log.warning("mqtt: dropping request without response topic or correlation data")
            return
        if correlation in self._seen:
            log.info("mqtt: dropping duplicate request %s", correlation.hex())
            return
        self._seen[correlation] = None
        if len(self._seen) > _SEEN_MAX:
            self._seen.popitem(last=False)
        expiry = getattr(props, "MessageExpiryInterval", None)
        budget = float(expiry) if isinstance(expiry, int) and expiry > 0 else self._settings.rpc_timeout_s
        # Back-pressure: with max_in_flight handlers running, further requests wait in aiomqtt's queue.
        await self._in_flight.acquire()
        try:
            task = self._supervisor.spawn(
                f"rpc-{correlation.hex()[:8]}",
                self._serve_one(client, handler, raw, response_topic, correlation, budget),
            )
        except RuntimeError:
            self._in_flight.release()
            return
        self._handler_tasks.add(task)
        task.add_done_callback(self._handler_done)

    def _handler_done(self, task: asyncio.Task[Any]) -> None:
        self._handler_tasks.discard(task)
        self._in_flight.release()

    async def _serve_one(
        self,
        client: aiomqtt.Client,
        handler: RawHandler,
        raw: bytes | bytearray | str,
        response_topic: str,
        correlation: bytes,
        budget: float,
    ) -> None:
        body = await self._call_handler(handler, raw, budget)
        props = _properties(
            PacketTypes.PUBLISH, CorrelationData=correlation, MessageExpiryInterval=max(1, math.ceil(budget))
        )
        try:
            await client.publish(response_topic, body, qos=1, properties=props, timeout=budget)
        except aiomqtt.MqttError as exc:
            # NO_CONN: paho keeps the QoS 1 reply and sends it after the reconnect.
            log.warning("mqtt: reply to %s not confirmed yet: %s", response_topic, exc)

    async def _call_handler(self, handler: RawHandler, raw: bytes | bytearray | str, budget: float) -> bytes:
        """Run one request like ``LocalBus`` does: the same replies for errors and timeouts."""
        try:
            method, payload = parse_request(raw)
        except ValueError as exc:
            log.warning("mqtt: malformed rpc request: %s", exc)
            return error_body(ApiError(ErrorCode.GENERIC, "malformed request"))
        if not self._serving:
            return error_body(ApiError(ErrorCode.NOT_READY, "coreapp is shutting down"))
        try:
            async with asyncio.timeout(budget):
                return ok_body(await handler(method, payload))
        except ApiError as exc:
            return error_body(exc)
        except TimeoutError:
            log.warning("rpc handler for %s did not finish within %.1fs", method, budget)
            return error_body(ApiError(ErrorCode.NOT_READY, "coreapp did not answer in time"))
        except Exception:
            log.exception("rpc handler failed for %s", method)
            return error_body(ApiError(ErrorCode.GENERIC))
