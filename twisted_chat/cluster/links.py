# -*- test-case-name: tests.cluster.test_redis_faults -*-
"""
Keeping a connection to Redis up (L{Link}): where it connects, reconnecting
after any failure with a backoff that only a complete set-up resets, and
what the log says about failures (L{TroubleLog}: one line per series of
failed attempts, not one per attempt).
"""

from __future__ import annotations

import random
from typing import Callable

import txredisapi
from twisted.application.internet import ClientService
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IProtocol, IProtocolFactory, IReactorTime, IStreamClientEndpoint
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.logger import FilteringLogObserver, Logger, LogLevel, LogLevelFilterPredicate, globalLogPublisher
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_chat.cluster.url import RedisURL


def endpoint(url: RedisURL, reactor: IReactorTime) -> IStreamClientEndpoint:
    """
    Where to connect to reach Redis at C{url} (over TLS for rediss://).
    """
    plain = HostnameEndpoint(reactor, url.host, url.port, timeout=5)
    if not url.tls:
        return plain
    trust = None
    if url.ca is not None:
        with open(url.ca, "rb") as f:
            trust = Certificate.loadPEM(f.read())
    return wrapClientTLS(optionsForClientTLS(url.host, trustRoot=trust), plain)


class _QuietClientService(ClientService):
    """
    A ClientService that does not log each retry ("Scheduling retry N to
    connect ..."): the node logs one line per series of failed attempts.
    """

    _log = Logger(observer=FilteringLogObserver(globalLogPublisher, [LogLevelFilterPredicate(LogLevel.warn)]))


@implementer(IStreamClientEndpoint)
class _Watched:
    """
    An endpoint that tells C{failed} why a connection attempt failed
    (refused, timed out, no such host) before passing the failure on.
    """

    def __init__(self, endpoint: IStreamClientEndpoint, failed: Callable[[Failure], None]) -> None:
        self._endpoint = endpoint
        self._failed = failed

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:
        def failed(f: Failure) -> Failure:
            if not isinstance(f.value, CancelledError):
                self._failed(f)
            return f

        return self._endpoint.connect(protocolFactory).addErrback(failed)


class Link:
    """
    One of a node's two connections to Redis, kept up by a ClientService:
    it reconnects after any failure, whatever happened (refused, closed
    during its set-up, an error answer, no answer), with a backoff of its
    own that only a complete set-up resets (L{up}) -- not merely an
    accepted connection, which a proxy in front of a Redis that is down
    gives at once.
    """

    def __init__(
        self,
        endpoint: IStreamClientEndpoint,
        factory: IProtocolFactory,
        failed: Callable[[Failure], None],
        backoff: Callable[[int], float],
        clock: IReactorTime,
    ) -> None:
        self.factory = factory
        self._backoff = backoff
        #: failed attempts since this connection was last fully set up
        self.failures = 0
        self.service = _QuietClientService(_Watched(endpoint, failed), factory, retryPolicy=self._retry, clock=clock)

    def _retry(self, attempt: int) -> float:
        # (ClientService counts again from 1 after each accepted connection)
        self.failures += 1
        return self._backoff(self.failures)

    def up(self) -> None:
        self.failures = 0


def backoff(failures: int, first: float, most: float) -> float:
    """
    Seconds to wait before the next attempt after C{failures} failed ones
    in a row: C{first}, doubling after each failed attempt up to C{most}
    (+-10 %).
    """
    delay = min(first * 2.0 ** min(failures - 1, 30), most)
    return delay * random.uniform(0.9, 1.1)


def classify(f: Failure) -> tuple[str, str]:
    """
    What kind of failure C{f} is, for the log ("password", "unreachable",
    or the code of an error Redis answered, e.g. "LOADING"), and its text.
    """
    if isinstance(f.value, txredisapi.ResponseError):
        text = f.getErrorMessage()
        code = text.split(" ", 1)[0]
        if code in ("WRONGPASS", "NOAUTH") or "invalid password" in text or "without any password" in text:
            return "password", text
        return code, text
    if isinstance(f.value, DeferredTimeout):
        return "unreachable", "no answer"
    if isinstance(f.value, txredisapi.ConnectionError):
        return "unreachable", "the connection was closed before Redis answered"
    return "unreachable", f.getErrorMessage()


class TroubleLog:
    """
    What a node logs about its connections' failures: the first failure
    of a series, and one of another kind than the series' (refused, then a
    refused password, then LOADING...), one line each, not one per
    attempt; the end of the series is logged by the node (L{over}).
    """

    _log = Logger()

    def __init__(
        self,
        node: str,
        url: RedisURL,
        clock: IReactorTime,
        commandTimeout: Callable[[], float],
        retryMaxDelay: Callable[[], float],
    ) -> None:
        self.node = node
        self.url = url
        self.clock = clock
        self._commandTimeout = commandTimeout
        self._retryMaxDelay = retryMaxDelay
        #: the kind of failure of the current series, None while all is well
        self.kind: str | None = None
        self.since = 0.0
        self.attempts = 0

    def failed(self, f: Failure, doing: str) -> None:
        """
        An attempt failed (C{doing} what).
        """
        self.attempts += 1
        kind, why = classify(f)
        if kind == "unreachable" and why == "no answer":
            why = "no answer within %g s" % (self._commandTimeout(),)
        self.troubled(kind, why, doing)

    def troubled(self, kind: str, why: str, doing: str) -> None:
        """
        Something of C{kind} went wrong (C{why}) while C{doing} something.
        """
        if kind == self.kind:
            return
        if self.kind is None:
            self.since = self.clock.seconds()
        self.kind = kind
        fields = dict(node=self.node, url=self.url.display(), why=why, doing=doing, most=self._retryMaxDelay())
        if kind == "password":
            self._log.error(
                "node {node}: Redis at {url} refuses the password of --broker ({why}); trying again every "
                "{most:g} s until it accepts it: fix the URL's password (or Redis' requirepass or ACL user)",
                **fields,
            )
        elif kind == "LOADING":
            self._log.warn(
                "node {node}: Redis at {url} is still loading its data ({why}); trying again every {most:g} s at "
                "most until it is ready",
                **fields,
            )
        elif kind == "unreachable":
            self._log.warn(
                "node {node}: lost Redis at {url} ({doing}: {why}); reconnecting with backoff (at most {most:g} s "
                "apart) until it answers",
                **fields,
            )
        else:
            self._log.warn(
                "node {node}: Redis at {url} answered an error ({doing}: {why}); trying again every {most:g} s at "
                "most",
                **fields,
            )

    def over(self) -> tuple[float, int] | None:
        """
        The series is over (all is well again): how long it lasted and how
        many attempts failed, or None if there was none.
        """
        result = None if self.kind is None else (self.clock.seconds() - self.since, self.attempts)
        self.kind = None
        self.attempts = 0
        return result
