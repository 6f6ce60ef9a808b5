"""
What the tests of the terminal client share: a recording UI (L{FakeUI}),
json-mode messages (L{msg}), a tiny line-chat server, the client under a
pseudo-terminal (L{PtyClient}) and the environment it runs in.

Imports Twisted: test modules import it, conftest.py must not.
"""

from __future__ import annotations

import calendar
import os
from typing import Any

from twisted.internet.defer import Deferred, DeferredQueue, succeed
from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure

from tests.support.components import REPO

#: 2026-11-26 12:00:00 UTC
NOON = float(calendar.timegm((2026, 11, 26, 12, 0, 0)))
#: seconds: bound on every wait
TIMEOUT = 10.0
#: a web front-end on a free loopback port (for C{startDaemon(web=…)})
LOOPBACK_WEB = "tcp:0:interface=127.0.0.1"


class FakeUI:
    """
    A UI that records what it is asked to show.
    """

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.statuses: list[str] = []
        self.notices: list[str] = []
        #: what the status line showed, in order
        self.activity: list[str] = []
        self.sink: Any = None
        self.closed = False
        self.queue: DeferredQueue[str] = DeferredQueue()

    def start(self, sink: Any, reactor: Any) -> None:
        self.sink = sink

    def showLine(self, line: str) -> None:
        self.lines.append(line)
        self.queue.put(line)

    def showStatus(self, text: str) -> None:
        self.statuses.append(text)

    def showNotice(self, text: str) -> None:
        self.notices.append(text)

    def showActivity(self, text: str) -> None:
        self.activity.append(text)

    def close(self) -> Deferred[None]:
        self.closed = True
        return succeed(None)


def result(d: Deferred[Any]) -> Any:
    """
    The result a Deferred has already fired with.
    """
    out: list[Any] = []
    d.addBoth(out.append)
    assert out, "the Deferred has not fired"
    if isinstance(out[0], Failure):
        out[0].raiseException()
    return out[0]


def msg(room: str, id: int, sender: str, text: str, t: float = NOON, action: bool = False, epoch: str = "e1") -> dict[str, Any]:
    return {"type": "message", "room": room, "id": id, "epoch": epoch, "from": sender, "text": text,
            "time": int(t * 1000), "action": action}


async def stopListening(port: Any) -> None:
    from twisted.internet import reactor

    d = port.stopListening()
    if d is not None:
        await d.addTimeout(TIMEOUT, reactor)


def lineServerFactory(received: DeferredQueue[str], greeting: bytes = b"") -> Any:
    """
    A tiny line-chat server: greets, echoes every line as
    C{#lobby <me> LINE}, and answers C{/quit} with C{*** bye} and a close.
    """
    from twisted.internet.protocol import Factory
    from twisted.protocols.basic import LineOnlyReceiver

    class Echo(LineOnlyReceiver):
        delimiter = b"\n"

        def connectionMade(self) -> None:
            self.factory.connections.append(self)
            if greeting:
                self.transport.write(greeting)

        def lineReceived(self, line: bytes) -> None:
            text = line.decode("utf-8")
            received.put(text)
            if text.startswith("/quit"):
                self.sendLine(b"*** bye")
                self.transport.loseConnection()
            elif not text.startswith("/"):
                self.sendLine(b"#lobby <me> " + line)

        def connectionLost(self, reason: Failure = ConnectionDone) -> None:  # type: ignore[assignment]
            self.factory.lost.put(type(reason.value).__name__)

    factory = Factory.forProtocol(Echo)
    factory.noisy = False
    factory.connections = []
    factory.lost = DeferredQueue()
    return factory


class PtyClient:
    """
    The client running under a pseudo-terminal, as a Twisted process.
    """

    def __init__(self) -> None:
        from twisted.internet.protocol import ProcessProtocol

        self.output = b""
        self.ended: Deferred[int] = Deferred()
        self._waiting: list[tuple[bytes, int, Deferred[None]]] = []
        outer = self

        class Proto(ProcessProtocol):
            def childDataReceived(self, fd: int, data: bytes) -> None:
                outer.output += data
                outer._check()

            def processEnded(self, reason: Failure) -> None:
                outer.ended.callback(getattr(reason.value, "exitCode", None))

        self.protocol = Proto()

    def _check(self) -> None:
        for item in list(self._waiting):
            pattern, start, d = item
            if pattern in self.output[start:]:
                self._waiting.remove(item)
                d.callback(None)

    def waitFor(self, pattern: bytes, start: int = 0) -> Deferred[None]:
        """
        Fires once the output (from offset C{start}) contains C{pattern}.
        """
        d: Deferred[None] = Deferred()
        self._waiting.append((pattern, start, d))
        self._check()
        return d

    def write(self, data: bytes) -> None:
        self.protocol.transport.write(data)


def clientEnvironment() -> dict[str, str]:
    """
    The environment of the client started from the source tree (the
    repository first on its path), on an xterm.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.pop("PYTHONWARNINGS", None)
    env["TERM"] = "xterm"
    return env
