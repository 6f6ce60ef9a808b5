# -*- test-case-name: tests.daemon.test_ops -*-
"""
Operability: Prometheus metrics, health and readiness probes, reactor lag.

The service reports through a small L{Stats} object (no Prometheus import in
the service); gauges that describe the current state (connections, rooms,
members) are computed when scraped, so they cost nothing on the hot path.
Deliveries are counted once per broadcast, not once per recipient.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any, Iterator

from twisted.application.service import Service
from twisted.internet.defer import maybeDeferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from twisted_chat.core.stats import Stats, reasonLabel

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorTime

    from twisted_chat.core.service import ChatService

class PrometheusStats(Stats):
    """
    L{Stats} as Prometheus metrics in their own registry, plus a collector
    that reads the service's state at scrape time.
    """

    def __init__(self, service: ChatService) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.service = service
        self.registry = registry = CollectorRegistry()
        self.messages = Counter(
            "chat_messages", "Messages stored and delivered, by kind (room or private).", ["kind"], registry=registry
        )
        self.storeFailures = Counter("chat_store_failures", "Messages the store failed to commit.", registry=registry)
        self.deliveries = Counter(
            "chat_deliveries", "Room messages handed to connections (one per member of the room).", registry=registry
        )
        self.disconnects = Counter(
            "chat_disconnects", "Connections that ended, by reason.", ["reason"], registry=registry
        )
        self.refusals = Counter(
            "chat_refused",
            "Connections refused or disconnected, by reason (flood: disconnected for flooding, server-full…).",
            ["reason"],
            registry=registry,
        )
        self.throttles = Counter(
            "chat_throttled",
            "Times a connection had to wait for flood control (its input held until its rate allowed it).",
            registry=registry,
        )
        self.storeLatency = Histogram(
            "chat_store_commit_seconds",
            "Time from receiving a message to its commit in the store.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=registry,
        )
        self.reactorLag = Histogram(
            "chat_reactor_lag_seconds",
            "How late a 1 s timer fired: time the reactor was busy.",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=registry,
        )
        self.maxLag = Gauge("chat_reactor_lag_max_seconds", "The largest reactor lag seen.", registry=registry)
        self._maxLagSeen = 0.0
        registry.register(_StateCollector(service))

    def watchRelay(self, relayedBy: dict[str, int]) -> None:
        """
        Expose C{relayedBy} (a Socket.IO router's count of relayed
        requests by kind of hop) as C{chat_sio_relayed_total}.
        """
        self.registry.register(_RelayCollector(relayedBy))

    def messageStored(self, kind: str, seconds: float) -> None:
        self.messages.labels(kind).inc()
        self.storeLatency.observe(seconds)

    def storeFailed(self) -> None:
        self.storeFailures.inc()

    def delivered(self, count: int) -> None:
        self.deliveries.inc(count)

    def disconnected(self, reason: str) -> None:
        self.disconnects.labels(reasonLabel(reason)).inc()

    def refused(self, why: str) -> None:
        self.refusals.labels(why).inc()

    def throttled(self) -> None:
        self.throttles.inc()

    def lag(self, seconds: float) -> None:
        self.reactorLag.observe(seconds)
        if seconds > self._maxLagSeen:
            self._maxLagSeen = seconds
            self.maxLag.set(seconds)


class _RelayCollector:
    """
    The Socket.IO requests this process relayed to their session's owner,
    read when Prometheus scrapes.
    """

    def __init__(self, relayedBy: dict[str, int]) -> None:
        self.relayedBy = relayedBy

    def collect(self) -> Iterator[Any]:  # (prometheus_client is untyped)
        from prometheus_client.core import CounterMetricFamily

        relayed = CounterMetricFamily(
            "chat_sio_relayed",
            "Socket.IO requests (polls, posts, upgrades) relayed to the worker or node that owns their session, "
            "by hop (worker, node).",
            labels=["hop"],
        )
        for hop, count in sorted(self.relayedBy.items()):
            relayed.add_metric([hop], count)
        yield relayed


class _StateCollector:
    """
    Gauges read from the service when Prometheus scrapes.
    """

    def __init__(self, service: ChatService) -> None:
        self.service = service

    def collect(self) -> Iterator[Any]:  # (prometheus_client is untyped)
        from prometheus_client.core import GaugeMetricFamily

        service = self.service
        byKind: dict[str, int] = {}
        for m in list(service.members):
            kind = getattr(m.client, "kind", "other")
            byKind[kind] = byKind.get(kind, 0) + 1
        members = GaugeMetricFamily("chat_members", "Connected chat members, by front-end.", labels=["frontend"])
        for kind, n in sorted(byKind.items()):
            members.add_metric([kind], n)
        yield members
        yield GaugeMetricFamily(
            "chat_connections", "Open connections (including ones not yet in the chat).", value=service.admission.total
        )
        yield GaugeMetricFamily("chat_rooms", "Rooms with at least one member.", value=len(service.rooms))
        yield GaugeMetricFamily(
            "chat_room_memberships",
            "Members summed over rooms.",
            value=sum(len(r.members) for r in list(service.rooms.values())),
        )


class LagMonitor(Service):
    """
    A 1 s LoopingCall that measures how late it fires: reactor lag.
    """

    def __init__(self, stats: PrometheusStats, clock: IReactorTime) -> None:
        self.stats = stats
        self.clock = clock
        self._loop: LoopingCall | None = None
        self._expected = 0.0

    def startService(self) -> None:
        Service.startService(self)
        self._loop = LoopingCall(self._tick)
        self._loop.clock = self.clock
        self._expected = time.monotonic()
        self._loop.start(1.0, now=True)

    def _tick(self) -> None:
        now = time.monotonic()
        lag = max(0.0, now - self._expected)
        self._expected = now + 1.0
        self.stats.lag(lag)

    def stopService(self) -> None:
        Service.stopService(self)
        if self._loop is not None and self._loop.running:
            self._loop.stop()


class HealthResource(Resource):
    """
    C{/healthz}: the process answers (liveness).
    """

    isLeaf = True

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"Content-Type", b"application/json")
        request.setHeader(b"Cache-Control", b"no-store")
        return b'{"status":"ok"}\n'


class ReadyResource(Resource):
    """
    C{/readyz}: 200 when the service runs and its store answers within a
    second, 503 otherwise (readiness: take this node out of rotation).
    """

    isLeaf = True
    _log = Logger()

    def __init__(self, service: ChatService, timeout: float = 1.0) -> None:
        Resource.__init__(self)
        self.service = service
        self.timeout = timeout

    def render_GET(self, request: Request) -> bytes | int:
        request.setHeader(b"Content-Type", b"application/json")
        request.setHeader(b"Cache-Control", b"no-store")
        service = self.service
        if not service.running:
            request.setResponseCode(503)
            return json.dumps({"status": "stopping"}).encode() + b"\n"
        d = maybeDeferred(service.store.ping)
        d.addTimeout(self.timeout, service.clock)
        # A prober that gave up (its own timeout is often 1 s too) is not
        # answered: finishing a request whose connection is gone raises.
        gone: list[bool] = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))

        def ready(_: object) -> None:
            if gone:
                return
            body = {"status": "ready", "store": "ok", "members": len(service.members)}
            request.write(json.dumps(body).encode() + b"\n")
            request.finish()

        def notReady(f: Failure) -> None:
            self._log.warn("not ready: the store did not answer ({why})", why=str(f.value))
            if gone:
                return
            request.setResponseCode(503)
            request.write(json.dumps({"status": "unavailable", "store": str(f.value)}).encode() + b"\n")
            request.finish()

        d.addCallbacks(ready, notReady)
        return NOT_DONE_YET


def makeAdminRoot(service: ChatService, stats: PrometheusStats) -> Resource:
    """
    The admin port: C{/metrics}, C{/healthz}, C{/readyz}.
    """
    from prometheus_client.twisted import MetricsResource

    root = Resource()
    root.putChild(b"metrics", MetricsResource(stats.registry))
    root.putChild(b"healthz", HealthResource())
    root.putChild(b"readyz", ReadyResource(service))
    return root
