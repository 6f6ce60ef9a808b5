# -*- test-case-name: tests.test_client -*-
"""
C{twisted-chat}: the interactive terminal client.

    twisted-chat [--nick NAME] [--insecure | --cafile PATH] [URL]

It speaks the line chat over C{tcp://} and C{tls://}, and WebSocket json
mode over C{ws://} and C{wss://}; either way the user types and sees the
line chat (docs/protocol.md). On a terminal it edits the input line in raw
mode (L{twisted_chat.client.tty}); with piped input it sends each line it
reads and writes each line it receives, for scripts. Over WebSocket a lost
connection (or a server going away) is reconnected with backoff, and the
session resumes: missed messages once, unacknowledged ones sent again. The
session ends only once the server has confirmed what was sent (or a bound
passed), and the exit status says whether everything went through.

The pieces, each replaceable in tests:

  - L{ChatClient} decides what happens: it forwards typed lines to the link,
    handles C{/quit}, C{bye} and end of input, and settles the exit status;
  - a I{link} talks to the server: L{LineLink} (line chat) or L{JsonLink}
    (Autobahn, json mode, translating with L{JsonChat});
  - a I{UI} talks to the user: L{PipeUI} here, or the terminal UI.

Nothing imports the reactor at module level; L{main} runs it with
L{twisted.internet.task.react}.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
from collections import deque
from typing import TYPE_CHECKING, Any, Callable, NoReturn, Protocol as TypingProtocol, cast

from autobahn.exception import Disconnected
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet import error as neterror
from twisted.internet.defer import Deferred, TimeoutError as DeferredTimeoutError, succeed
from twisted.internet.interfaces import (
    IHalfCloseableProtocol,
    IHandshakeListener,
    IOpenSSLClientConnectionCreator,
)
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    eventAsText,
    globalLogBeginner,
)
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_chat import __version__
from twisted_chat.client.ui import PROG, ChatUI, InputSink, writeStderr
from twisted_chat.client.core import (
    DEFAULT_URL,
    SUBPROTOCOL,
    BadURL,
    JsonChat,
    Target,
    describeInput as _describe,
    describeRequest,
    newRefPrefix,
    parseTarget,
    quitRequest,
)
from twisted_chat.core.errors import ChatError
from twisted_chat.core.names import checkNick
from twisted_chat.wire.render import oneLine

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall, IReactorTime, IStreamClientEndpoint

#: how long the end of the session waits for the server's confirmations
DEFAULT_CONFIRM_TIMEOUT = 10.0


class ChatLink(TypingProtocol):
    """
    The server's side: one open connection.
    """

    def sendInput(self, line: str) -> None:
        """
        Send what the user typed (plain text or a line-chat command).
        """

    #: what L{unconfirmed} counts, in the singular ("message", "line")
    unit: str

    def sendQuit(self, reason: str) -> None:
        """
        Say goodbye once nothing sent is L{unconfirmed} (at once if the
        goodbye itself is what confirms it); the server is expected to
        close the connection.
        """

    def abort(self) -> None:
        """
        Close the connection now.
        """

    def unconfirmed(self) -> tuple[int, list[str]]:
        """
        How many things sent in this session (on this connection or, when
        it resumes one, an earlier one) the server has not confirmed yet,
        and the latest of them (at least the last ten), one short
        description each, as typed. L{sendQuit} waits until there are none.
        """

    def refusals(self) -> int:
        """
        How many requests were refused so far in this session (each shown
        as a C{!!! } line).
        """


def describeFailure(failure: Failure) -> str:
    """
    A short, one-line reason for a failed or lost connection.
    """
    e = failure.value
    if isinstance(e, neterror.ConnectionRefusedError):
        return "connection refused"
    if isinstance(e, (neterror.TimeoutError, DeferredTimeoutError)):
        return "timed out"
    if isinstance(e, neterror.DNSLookupError):
        return "cannot resolve the host name"
    if isinstance(e, neterror.ConnectionDone):
        return "connection closed"
    if isinstance(e, neterror.ConnectionLost):
        return "connection lost"
    if type(e).__module__.startswith("service_identity"):
        # VerificationError(errors=[DNSMismatch(mismatched_id=DNS_ID(...)), ...])
        ids = [getattr(err, "mismatched_id", None) for err in getattr(e, "errors", [])]
        names = [str(getattr(i, "hostname", None) or getattr(i, "ip", None) or i) for i in ids if i is not None]
        return "TLS error: the server's certificate is not valid for " + (", ".join(names) or "this host")
    if type(e).__module__.startswith("OpenSSL"):
        # OpenSSL.SSL.Error([(library, function, reason), ...])
        reasons = [r[2] for r in (e.args[0] if e.args else []) if isinstance(r, tuple) and len(r) == 3]
        return "TLS error: " + ("; ".join(str(r) for r in reasons if r) or str(e))
    text = failure.getErrorMessage().strip()
    return oneLine(text) if text else type(e).__name__


class ChatClient:
    """
    One session of the client: user input in, server lines out, an exit
    status at the end.

    Lines typed before the connection is open are queued and sent once it
    is. C{/quit [REASON]}, C{bye} and the end of the input end the session,
    but not before the server has confirmed what was sent: everything the
    link reports as L{unconfirmed <ChatLink.unconfirmed>} (json mode: every
    C{say} and C{msg} until its C{ack} or C{error}; the line chat: every
    line until the C{*** bye} that answers C{/quit}, which the server sends
    once it has handled the lines before it). It waits until the server has
    confirmed nothing for C{confirmTimeout} seconds (each confirmation
    restarts the bound: a server that slows a long paste down to its flood
    rate is still answering), shows what arrives meanwhile, and gives up on
    a second interrupt (L{userInterrupt}).

    L{done} fires with the exit status:

      - 0 after a goodbye of ours, with everything confirmed;
      - 3 likewise, but the server (or the client, for a mistyped command)
        refused some of it: an C{!!! } line was shown for each (see
        L{ChatLink.refusals});
      - 1 when the connection cannot be made, the server closes it first,
        or something sent (or typed) was never confirmed; those are then
        listed, one status line each.

    When the link can resume (C{redial} is set: WebSocket json mode) and it
    is lost without a goodbye of ours (abnormally, or closed by the server
    with 1001 "going away"), the session goes on: it says so and connects
    again after a random delay of up to C{baseDelay * 2 ** failures} seconds
    (full jitter, capped at C{maxDelay}), and at least as long as the
    server's C{reconnect_after} hint. After C{reconnectAttempts} failed
    attempts in a row it gives up with status 1; 0 attempts means it never
    reconnects. A link lost while waiting for confirmations is resumed the
    same way (within the same bound), so that what was not acknowledged is
    sent again with its C{ref} and answered once. Quitting while it waits to
    reconnect, with nothing to confirm, ends with 0 at once.
    """

    #: the first reconnect waits up to this many seconds, doubling per failure
    baseDelay = 0.5
    #: no reconnect waits longer than this (unless the server asks to)
    maxDelay = 15.0
    #: still waiting for confirmations this long after the goodbye: say so
    noticeDelay = 1.0
    #: at most this many unconfirmed messages are listed one by one
    maxListed = 10

    def __init__(
        self,
        target: Target,
        ui: ChatUI,
        clock: IReactorTime,
        reconnectAttempts: int = 8,
        random: Callable[[], float] = random.random,
        confirmTimeout: float = DEFAULT_CONFIRM_TIMEOUT,
    ) -> None:
        self.target = target
        self.ui = ui
        self.clock = clock
        self.reconnectAttempts = reconnectAttempts
        self.random = random
        self.confirmTimeout = confirmTimeout
        #: connects again (as L{connect} did), for links that can resume
        self.redial: Callable[[], object] | None = None
        #: whether the link was lost and we are connecting again
        self.reconnecting = False
        self._failures = 0
        self._retryTimer: IDelayedCall | None = None
        #: fires with the exit status
        self.done: Deferred[int] = Deferred()
        #: the open link, if any
        self.link: ChatLink | None = None
        # the link opened last, open or not (what it sent, what was refused)
        self._lastLink: ChatLink | None = None
        #: the connection attempt, while it runs
        self.connecting: Deferred[Any] | None = None
        self._queue: list[str] = []
        self._quitReason: str | None = None
        # since the first goodbye: the bound on waiting for confirmations,
        # and the notice that we wait
        self._deadline: IDelayedCall | None = None
        self._noticeTimer: IDelayedCall | None = None
        # why we stopped waiting for confirmations, if we did
        self._stopped: str | None = None
        self._inputRefusals = 0
        self._cancelled = False
        self._finished = False

    # -- from the UI --

    def userLine(self, line: str) -> None:
        """
        Send C{line}, or quit if it says so.
        """
        if self._finished or self._quitReason is not None:
            return
        reason = quitRequest(line)
        if reason is not None:
            self.quit(reason)
        elif self.link is None:
            self._queue.append(line)
        else:
            self.link.sendInput(line)

    def userEOF(self) -> None:
        """
        No more input: quit, once connected and what was typed is sent (so
        that a failure to connect is still reported) and confirmed.
        """
        self.quit("", giveUp=False)

    def userInterrupt(self) -> None:
        """
        The user pressed the interrupt key (Ctrl-C): the first time, as the
        end of input; while waiting for confirmations, stop waiting now.
        """
        if self._quitReason is None and self._deadline is None:
            self.userEOF()
        else:
            self._stopWaiting("stopped waiting for the server")

    def inputRefused(self) -> None:
        """
        A line the user typed could not be sent (and the UI said so).
        """
        self._inputRefusals += 1

    def quit(self, reason: str = "", giveUp: bool = True) -> None:
        """
        End the session: say goodbye once what was sent is confirmed (the
        link waits for that), then wait for the server to close, all within
        C{confirmTimeout} seconds. Before the connection is open, quit right
        after it opens; or, with C{giveUp} and nothing typed waiting, stop
        connecting at once.
        """
        if self._finished or self._quitReason is not None:
            return
        self._quitReason = reason
        if self._deadline is None and self._stopped is None:
            self._deadline = self.clock.callLater(self.confirmTimeout, self._confirmTimedOut)
            if self.noticeDelay < self.confirmTimeout:
                self._noticeTimer = self.clock.callLater(self.noticeDelay, self._waitingNotice)
        link = self.link
        if link is None:
            if self._queue or self.unconfirmed()[0]:
                # connecting (again) to send and confirm it
                return
            if self._retryTimer is not None:
                # waiting to reconnect: nothing to wait for
                self._finish(0)
            elif giveUp and self.connecting is not None:
                self._cancelled = True
                self.connecting.cancel()
            return
        link.sendQuit(reason)

    def progressed(self) -> None:
        """
        The server confirmed something while we wait for it: the bound on
        waiting starts again.
        """
        if self._deadline is not None and self._deadline.active():
            self._deadline.reset(self.confirmTimeout)

    def _waitingNotice(self) -> None:
        self._noticeTimer = None
        if self._finished:
            return
        waiting = self.unconfirmed()[0] + len(self._typedNotSent())
        if waiting:
            self.ui.showNotice(
                "waiting for the server to confirm %s (giving up after %s s without an answer)"
                % (_plural(waiting, self._unit()), _seconds(self.confirmTimeout))
            )

    def _confirmTimedOut(self) -> None:
        self._deadline = None
        if self._lastLink is None:
            self._stopWaiting("no connection within %s s" % (_seconds(self.confirmTimeout),))
        else:
            self._stopWaiting(
                "gave up waiting: the server confirmed nothing for %s s" % (_seconds(self.confirmTimeout),)
            )

    def _stopWaiting(self, why: str) -> None:
        """
        Give up waiting for confirmations (or for the connection): close
        what is open; the session then ends, reporting what is unconfirmed.
        """
        if self._finished:
            return
        if self._stopped is None:
            self._stopped = why
        if self.link is not None:
            self.link.abort()
        elif self.connecting is not None:
            self._cancelled = True
            self.connecting.cancel()
        else:
            self._finish(0)

    # -- what is not confirmed --

    def unconfirmed(self) -> tuple[int, list[str]]:
        """
        How much was sent (on this link or an earlier one) and is not
        confirmed yet, and the latest of it (see L{ChatLink.unconfirmed}).
        """
        link = self.link if self.link is not None else self._lastLink
        return link.unconfirmed() if link is not None else (0, [])

    def _typedNotSent(self) -> list[str]:
        return [_describe(line) for line in self._queue if line.strip()]

    def _unit(self) -> str:
        link = self.link if self.link is not None else self._lastLink
        return link.unit if link is not None else "message"

    def _refusals(self) -> int:
        link = self.link if self.link is not None else self._lastLink
        return self._inputRefusals + (link.refusals() if link is not None else 0)

    # -- from the link --

    def linkOpened(self, link: ChatLink) -> None:
        """
        The connection is open: send what was queued, and quit if asked to
        meanwhile.
        """
        self.connecting = None
        if self._finished:
            link.abort()
            return
        self.link = self._lastLink = link
        if self.reconnecting:
            self.reconnecting = False
            self._failures = 0
            self.ui.showStatus("reconnected to %s" % (self.target.address,))
        queued, self._queue = self._queue, []
        for line in queued:
            link.sendInput(line)
        if self._quitReason is not None:
            reason, self._quitReason = self._quitReason, None
            self.quit(reason)

    def showLine(self, line: str) -> None:
        """
        Show a line from (or about) the server.
        """
        if not self._finished:
            self.ui.showLine(line)

    def connectFailed(self, reason: str) -> None:
        """
        The connection could not be made (or was lost before it was open).
        """
        self.connecting = None
        if self._cancelled:
            if self._stopped is not None and self._lastLink is None:
                # never connected, and we stopped waiting for it
                self._finish(1, "cannot connect to %s: %s" % (self.target.address, self._stopped))
            else:
                self._finish(0)
        elif self.reconnecting:
            if self._quitReason is not None and not (self._queue or self.unconfirmed()[0]):
                # the user asked to leave meanwhile, with nothing to deliver
                self._finish(0)
                return
            self._failures += 1
            what = "cannot reconnect to %s: %s" % (self.target.address, reason)
            if self._failures >= self.reconnectAttempts:
                self._finish(1, "%s (gave up after %s)" % (what, _plural(self._failures, "attempt")))
            else:
                self._retry(what, None)
        else:
            self._finish(1, "cannot connect to %s: %s" % (self.target.address, reason))

    def connectFailure(self, failure: Failure) -> None:
        """
        Errback of the connection attempt.
        """
        if self._cancelled:
            self.connectFailed("cancelled")
        else:
            self.connectFailed(describeFailure(failure))

    def linkClosed(self, reason: str | None = None, resumable: bool = False, retryAfter: float | None = None) -> None:
        """
        The open connection is gone; C{reason} says why when the server gave
        (or there was) one. C{resumable} when it was lost or the server went
        away, so that connecting again makes sense, not before C{retryAfter}
        seconds if given.
        """
        self.link = None
        canResume = resumable and self.redial is not None and self.reconnectAttempts > 0
        if self._quitReason is not None:
            if canResume and self._stopped is None and self.unconfirmed()[0]:
                # lost while waiting for confirmations: resume, send again
                self._reconnect(reason, retryAfter)
            elif self.unconfirmed()[0] and self._stopped is None:
                self._finish(1, _closedBy(reason))
            else:
                self._finish(0)
        elif canResume:
            self._reconnect(reason, retryAfter)
        else:
            self._finish(1, _closedBy(reason))

    def _reconnect(self, reason: str | None, retryAfter: float | None) -> None:
        self.reconnecting = True
        self._failures = 0
        self._retry("connection lost (%s)" % (reason,) if reason else "connection lost", retryAfter)

    def retryDelay(self, retryAfter: float | None = None) -> float:
        """
        How long to wait before the next attempt to reconnect: a random time
        up to C{baseDelay * 2 ** failures} seconds, at most C{maxDelay}, and
        at least C{retryAfter} when given.
        """
        delay = self.random() * min(self.maxDelay, self.baseDelay * 2 ** min(self._failures, 32))
        if retryAfter is not None:
            delay = max(delay, retryAfter)
        return delay

    def _retry(self, what: str, retryAfter: float | None) -> None:
        delay = self.retryDelay(retryAfter)
        self.ui.showStatus("%s: reconnecting in %.1f s\u2026" % (what, delay))
        self._retryTimer = self.clock.callLater(delay, self._redialNow)

    def _redialNow(self) -> None:
        self._retryTimer = None
        if self._finished or self.redial is None:
            return
        self.redial()

    def _finish(self, status: int, message: str | None = None) -> None:
        """
        End the session with C{status}, made 1 if something is still
        unconfirmed, or typed and not sent after a connection was lost
        (listed in statuses), or 3 if something was refused.
        """
        if self._finished:
            return
        self._finished = True
        for timer in (self._retryTimer, self._deadline, self._noticeTimer):
            if timer is not None and timer.active():
                timer.cancel()
        self._retryTimer = self._deadline = self._noticeTimer = None
        if message is not None:
            self.ui.showStatus(message)
        count, unconfirmed = self.unconfirmed()
        # (never connected: "cannot connect" says that nothing went)
        notSent = self._typedNotSent() if self._lastLink is not None else []
        if count or notSent:
            if status != 1:
                status = 1
                if message is None and self._stopped is not None:
                    self.ui.showStatus(self._stopped)
            if count:
                self._list(
                    count,
                    unconfirmed,
                    "%s not confirmed by the server (%s may or may not have gone through):"
                    % (_plural(count, self._unit()), "it" if count == 1 else "they"),
                )
            if notSent:
                self._list(len(notSent), notSent, "%s typed but not sent:" % (_plural(len(notSent), "line"),))
        elif status == 0:
            refused = self._refusals()
            if refused:
                status = 3
                self.ui.showStatus("1 request was refused" if refused == 1 else "%d requests were refused" % (refused,))
        self.done.callback(status)

    def _list(self, count: int, latest: list[str], header: str) -> None:
        """
        Show C{header}, then the last (at most L{maxListed}) of the C{count}
        things described by C{latest}, one status line each.
        """
        self.ui.showStatus(header)
        shown = latest[-self.maxListed :]
        if count > len(shown):
            self.ui.showStatus("  \u2026 %d before these" % (count - len(shown),))
        for item in shown:
            self.ui.showStatus("  " + item)


def _seconds(value: float) -> str:
    return "%g" % (value,)


def _closedBy(reason: str | None) -> str:
    return "connection closed by server (%s)" % (reason,) if reason else "connection closed by server"


def _plural(n: int, word: str) -> str:
    return "%d %s%s" % (n, word, "" if n == 1 else "s")


class LineSplitter(Protocol):
    """
    Split received bytes into lines (LF, with an optional CR before it)
    without ever buffering more than C{maxLength} bytes: a longer line is
    reported to L{lineTooLong} and the rest of it is discarded as it arrives.
    """

    maxLength = 1 << 20
    _buffer = b""
    _discarding = False

    def dataReceived(self, data: bytes) -> None:
        if self._discarding:
            i = data.find(b"\n")
            if i == -1:
                return
            data = data[i + 1 :]
            self._discarding = False
        buf = self._buffer + data if self._buffer else data
        start = 0
        while True:
            i = buf.find(b"\n", start)
            if i == -1:
                break
            line = buf[start:i]
            start = i + 1
            if line.endswith(b"\r"):
                line = line[:-1]
            if len(line) > self.maxLength:
                self.lineTooLong()
            else:
                self.lineReceived(line)
        rest = buf[start:]
        if len(rest) > self.maxLength:
            self._buffer = b""
            self._discarding = True
            self.lineTooLong()
        else:
            self._buffer = rest

    def lineReceived(self, line: bytes) -> None:
        raise NotImplementedError

    def lineTooLong(self) -> None:
        raise NotImplementedError


@implementer(IHandshakeListener)
class LineLink(LineSplitter):
    """
    The line chat (C{tcp://}, C{tls://}): typed lines go out as they are,
    received lines are shown as they are (made safe for a terminal).

    The line chat has no acknowledgements, but the server handles a
    connection's lines in order and answers C{/quit} with C{*** bye} only
    once it has answered every line before it: so the goodbye goes at once,
    and every line sent counts as unconfirmed from then on until that
    C{*** bye} arrives. Every C{!!! } line from the server is a refusal.

    Over TLS the link counts as open only once the handshake succeeded, so a
    certificate that fails verification is a failed connect, not a close.
    """

    unit = "line"
    #: the server's answer to C{/quit}, once it has answered what came before
    BYE = "*** bye"
    #: how many of the lines sent are kept, to say which were not confirmed
    keepSent = 100

    def __init__(self, client: ChatClient, nick: str | None = None, tls: bool = False) -> None:
        self.client = client
        self.nick = nick
        self.tls = tls
        self.opened = False
        self._sent: deque[str] = deque(maxlen=self.keepSent)
        self._sentCount = 0
        self._quitting = False
        self._bye = False
        self._refused = 0

    def connectionMade(self) -> None:
        if not self.tls:
            self._open()

    def handshakeCompleted(self) -> None:
        self._open()

    def _open(self) -> None:
        if self.opened:
            return
        self.opened = True
        if self.nick:
            self.sendInput("/nick " + self.nick)
        self.client.linkOpened(self)

    def lineReceived(self, line: bytes) -> None:
        text = oneLine(line.decode("utf-8", "replace"))
        if text.startswith("!!! "):
            self._refused += 1
        elif self._quitting and text == self.BYE:
            self._bye = True
        if self._quitting:
            # (the server answers lines in order: this is one of ours, or
            # what the room said meanwhile; either way it is still working
            # through them)
            self.client.progressed()
        self.client.showLine(text)

    def lineTooLong(self) -> None:
        self.client.showLine("!!! a line from the server was too long (over %d bytes): not shown" % (self.maxLength,))

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if not self.opened:
            self.client.connectFailed(describeFailure(reason))
        elif reason.check(neterror.ConnectionDone):
            self.client.linkClosed(None)
        else:
            self.client.linkClosed(describeFailure(reason))

    # -- ChatLink --

    def sendInput(self, line: str) -> None:
        self._write(line)
        if line.strip():
            self._sent.append(_describe(line))
            self._sentCount += 1

    def _write(self, line: str) -> None:
        self.transport.write(line.encode("utf-8", "replace") + b"\n")  # type: ignore[union-attr]

    def sendQuit(self, reason: str) -> None:
        self._quitting = True
        self._write("/quit " + reason if reason else "/quit")

    def abort(self) -> None:
        self.transport.abortConnection()  # type: ignore[union-attr]

    def unconfirmed(self) -> tuple[int, list[str]]:
        if not self._quitting or self._bye:
            return 0, []
        return self._sentCount, list(self._sent)

    def refusals(self) -> int:
        return self._refused


_GOING_AWAY = 1001


def _closeReason(text: str) -> str:
    """
    Cut C{text} to the 123 bytes a WebSocket close reason may have.
    """
    return text.encode("utf-8")[:120].decode("utf-8", "ignore")


class JsonLink(WebSocketClientProtocol):
    """
    WebSocket json mode (C{ws://}, C{wss://}): typed lines are translated
    into requests and events into lines by the factory's L{JsonChat}, which
    outlives the connection (it keeps the resume positions).
    """

    factory: JsonLinkFactory

    unit = "message"
    opened = False
    _refused: str | None = None
    # the goodbye's reason once asked for, and whether the close went out
    _quitting: str | None = None
    _closing = False

    def onConnect(self, response: Any) -> None:
        if response.protocol != SUBPROTOCOL:
            self._refused = "the server does not speak %s (wrong URL path?)" % (SUBPROTOCOL,)

    def onOpen(self) -> None:
        if self._refused is not None:
            self.sendClose(1000)
            return
        self.opened = True
        self._sendRequest(self.factory.chat.hello())
        self.factory.client.linkOpened(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        client = self.factory.client
        if isBinary:
            client.showLine("!!! unexpected binary frame from the server: ignored")
            return
        try:
            event = json.loads(payload.decode("utf-8"))
        except ValueError:
            client.showLine("!!! a frame from the server was not valid JSON: ignored")
            return
        chat = self.factory.chat
        unacked = len(chat.unacked)
        for line in chat.render(event):
            client.showLine(line)
        if len(chat.unacked) < unacked:
            client.progressed()
        for request in chat.takeRequests():
            self._sendRequest(request)
        if self._quitting is not None:
            self._closeWhenConfirmed()

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        client = self.factory.client
        if not self.opened:
            why = self._refused or self.wasNotCleanReason or reason or "connection closed"
            client.connectFailed(oneLine(str(why)))
            return
        chat = self.factory.chat
        retryAfter, chat.reconnectAfter = chat.reconnectAfter, None
        # lost without a close handshake (1006), or the server going away
        # (1001, on shutdown): worth connecting again and resuming
        resumable = not wasClean or code == _GOING_AWAY
        if wasClean:
            why = oneLine(reason) if reason else None
        else:
            why = oneLine(str(self.wasNotCleanReason or "connection lost"))
        client.linkClosed(why, resumable=resumable, retryAfter=retryAfter)

    def _sendRequest(self, request: dict[str, Any]) -> None:
        try:
            self.sendMessage(json.dumps(request, ensure_ascii=False).encode("utf-8"), isBinary=False)
        except Disconnected:
            pass

    # -- ChatLink --

    def sendInput(self, line: str) -> None:
        chat = self.factory.chat
        requests, lines = chat.translate(line)
        for text in lines:
            self.factory.client.showLine(text)
        for request in chat.outgoing(requests):
            self._sendRequest(request)

    def sendQuit(self, reason: str) -> None:
        self._quitting = reason
        self._closeWhenConfirmed()

    def _closeWhenConfirmed(self) -> None:
        """
        Once every C{say} and C{msg} has its C{ack} or C{error} (which come
        after their echo, or, after a resume, maybe before the history that
        has it: see L{JsonChat.echoesPending}), close; until then each event
        looks again.
        """
        chat = self.factory.chat
        if self._closing or chat.unacked or chat.echoesPending():
            return
        self._closing = True
        # what waits for the welcome still goes: the server handles it first
        for request in chat.takeHeld():
            self._sendRequest(request)
        reason = self._quitting
        self.sendClose(1000, _closeReason(reason) if reason else None)

    def abort(self) -> None:
        # not dropConnection(), which warns about an unclean close: this
        # one is ours, and the session says why it ends
        if self.transport is not None:
            self.transport.abortConnection()

    def unconfirmed(self) -> tuple[int, list[str]]:
        unacked = self.factory.chat.unacked
        latest = list(unacked.values())[-100:] if len(unacked) > 100 else list(unacked.values())
        return len(unacked), [describeRequest(r) for r in latest]

    def refusals(self) -> int:
        return self.factory.chat.refusals


class JsonLinkFactory(WebSocketClientFactory):
    """
    Builds L{JsonLink}s for one L{ChatClient}, offering the C{chat.json}
    subprotocol, with bounded frames and handshakes.
    """

    protocol = JsonLink  # type: ignore[assignment]
    noisy = False

    def __init__(self, client: ChatClient, target: Target, chat: JsonChat, reactor: Any = None) -> None:
        WebSocketClientFactory.__init__(
            self,
            url=target.url,
            protocols=[SUBPROTOCOL],
            useragent="%s/%s" % (PROG, __version__),
            reactor=reactor,
        )
        self.setProtocolOptions(
            maxFramePayloadSize=4 << 20,
            maxMessagePayloadSize=4 << 20,
            openHandshakeTimeout=15,
            closeHandshakeTimeout=2,
            autoPingInterval=30,
            autoPingTimeout=15,
        )
        self.client = client
        self.chat = chat


@implementer(IHalfCloseableProtocol)
class PipeUI(LineSplitter):
    """
    Plain line mode for piped input: every line read from stdin is sent,
    every line shown goes to stdout, statuses go to C{stderr}. The end of
    stdin quits (stdout stays open until the server's last lines are out);
    so does stdout going away.
    """

    def __init__(self, sink: InputSink | None = None, stderr: Callable[[str], None] | None = None) -> None:
        self.sink = sink
        self._stderr = stderr if stderr is not None else writeStderr
        self._closed: Deferred[None] | None = None
        self._lost = False
        self._writable = True

    def start(self, sink: InputSink, reactor: Any) -> None:
        from twisted.internet.stdio import StandardIO

        self.sink = sink
        StandardIO(self, reactor=reactor)

    def lineReceived(self, line: bytes) -> None:
        if self.sink is not None:
            self.sink.userLine(line.decode("utf-8", "replace"))

    def lineTooLong(self) -> None:
        self.showStatus("input line longer than %d bytes: not sent" % (self.maxLength,))
        if self.sink is not None:
            self.sink.inputRefused()

    def readConnectionLost(self) -> None:
        if self.sink is not None:
            self.sink.userEOF()

    def writeConnectionLost(self) -> None:
        self._writable = False
        if self.sink is not None:
            self.sink.userEOF()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._lost = True
        self._writable = False
        if self._closed is not None:
            d, self._closed = self._closed, None
            d.callback(None)
        elif self.sink is not None:
            self.sink.userEOF()

    def showLine(self, line: str) -> None:
        if self._writable and self.transport is not None:
            self.transport.write(line.encode("utf-8", "replace") + b"\n")

    def showStatus(self, text: str) -> None:
        self._stderr(text)

    def showNotice(self, text: str) -> None:
        self._stderr(text)

    def close(self) -> Deferred[None]:
        if self._lost or self.transport is None:
            return succeed(None)
        if self._closed is None:
            self._closed = Deferred()
            self.transport.loseConnection()
        return self._closed


# -- TLS --


class OptionError(ValueError):
    """
    A command-line option cannot be used; C{str()} says why in one line.
    """


_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


def loadCertificates(path: str) -> list[Any]:
    """
    Every PEM certificate in the file at C{path}, as
    L{twisted.internet.ssl.Certificate}s; L{OptionError} if there are none.
    """
    from twisted.internet.ssl import Certificate

    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise OptionError("cannot read --cafile %s: %s" % (path, e.strerror or e))
    blocks = _PEM.findall(data)
    if not blocks:
        raise OptionError("--cafile %s holds no PEM certificate" % (path,))
    try:
        return [Certificate.loadPEM(b) for b in blocks]
    except Exception as e:
        raise OptionError("--cafile %s: bad certificate: %s" % (path, oneLine(str(e)) or type(e).__name__))


@implementer(IOpenSSLClientConnectionCreator)
class InsecureTLS:
    """
    TLS that accepts any certificate (C{--insecure}): encrypted, but not
    authenticated. It still sends the host name (SNI) so virtual hosts work.
    """

    def __init__(self, hostname: str) -> None:
        from twisted.internet.abstract import isIPAddress, isIPv6Address
        from twisted.internet.ssl import CertificateOptions

        self._options = CertificateOptions()
        isIP = isIPAddress(hostname) or isIPv6Address(hostname)
        self._serverName = None if isIP else hostname.encode("idna")

    def clientConnectionForTLS(self, tlsProtocol: Any) -> Any:
        connection = self._options.clientConnectionForTLS(tlsProtocol)
        if self._serverName is not None:
            connection.set_tlsext_host_name(self._serverName)
        return connection


def tlsCreator(target: Target, insecure: bool = False, cafile: str | None = None) -> IOpenSSLClientConnectionCreator:
    """
    How to start TLS with C{target}: verify its certificate and host name
    against the system's trust store, or against the certificates in
    C{cafile} only; or, with C{insecure}, not at all.
    """
    if insecure:
        return InsecureTLS(target.host)  # type: ignore[return-value]
    from twisted.internet.ssl import optionsForClientTLS, trustRootFromCertificates

    trustRoot = trustRootFromCertificates(loadCertificates(cafile)) if cafile else None
    return optionsForClientTLS(target.host, trustRoot=trustRoot)


# -- connecting --


def endpointFor(
    reactor: Any, target: Target, creator: IOpenSSLClientConnectionCreator | None = None, timeout: float = 15
) -> IStreamClientEndpoint:
    """
    The client endpoint for C{target}: TCP to its host name (all its
    addresses tried, IPv6 and IPv4), wrapped in TLS when it is secure.
    """
    from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS

    endpoint: IStreamClientEndpoint = HostnameEndpoint(reactor, target.host, target.port, timeout=timeout)
    if target.secure:
        if creator is None:
            creator = tlsCreator(target)
        endpoint = wrapClientTLS(creator, endpoint)
    return endpoint


def connect(
    reactor: Any,
    client: ChatClient,
    nick: str | None = None,
    creator: IOpenSSLClientConnectionCreator | None = None,
    endpoint: IStreamClientEndpoint | None = None,
    refPrefix: str | None = None,
) -> Deferred[Any]:
    """
    Connect C{client} to its target with the right link; failures go to
    L{ChatClient.connectFailure}. The result is kept as
    C{client.connecting}, so that quitting early can cancel it. For
    WebSocket json mode, C{client.redial} connects again with the same
    L{JsonChat}, so that the session can resume; its refs start with
    C{refPrefix}, by default one of L{newRefPrefix}, new for each session.
    """
    target = client.target
    if endpoint is None:
        endpoint = endpointFor(reactor, target, creator)
    factory: Factory
    if target.websocket:
        chat = JsonChat(reactor.seconds, nick=nick, refPrefix=refPrefix if refPrefix is not None else newRefPrefix())
        factory = JsonLinkFactory(client, target, chat, reactor=reactor)
    else:
        factory = Factory.forProtocol(lambda: LineLink(client, nick, tls=target.secure))
        factory.noisy = False
    theEndpoint = endpoint

    def dial() -> Deferred[Any]:
        d: Deferred[Any] = theEndpoint.connect(factory)
        client.connecting = d
        d.addErrback(client.connectFailure)
        return d

    if target.websocket:
        client.redial = dial
    return dial()


# -- the program --


def makeParser() -> argparse.ArgumentParser:
    """
    The command line of C{twisted-chat}.
    """
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Chat on a twisted-chat server. Type a line to say it in your current room, "
            "/help for the commands, /quit (or bye) to leave."
        ),
        epilog=(
            "URL schemes: tcp://HOST:PORT and tls://HOST:PORT (line chat, default port 9000), "
            "ws://HOST:PORT/PATH and wss://HOST:PORT/PATH (WebSocket json mode, e.g. "
            "ws://127.0.0.1:8080/ws). With piped input, every input line is sent and every "
            "server line printed. The end of input (Ctrl-D on a terminal), /quit or bye quits "
            "once the server has confirmed everything sent (ws: each message's ack; tcp: the "
            "'*** bye' that answers /quit), showing what arrives meanwhile, and giving up when "
            "the server confirms nothing for --confirm-timeout seconds (on a terminal, Ctrl-C "
            "stops waiting). "
            "Exit status: 0 when everything was confirmed; "
            "3 when it was, but something was refused (a '!!! ' line); 1 when something sent "
            "was not confirmed (listed on stderr), the connection failed or the server closed "
            "it; 2 for a bad command line."
        ),
    )
    parser.add_argument(
        "url", nargs="?", default=DEFAULT_URL, metavar="URL", help="where to connect (default: %(default)s)"
    )
    parser.add_argument("--nick", metavar="NAME", help="the nickname to use")
    parser.add_argument(
        "--insecure", action="store_true", help="tls/wss: do NOT verify the server's certificate (testing only)"
    )
    parser.add_argument(
        "--cafile", metavar="PATH", help="tls/wss: trust only the CA (or self-signed) certificates in this PEM file"
    )
    parser.add_argument(
        "--reconnect-attempts",
        metavar="N",
        type=_attempts,
        default=8,
        help="ws/wss: when the connection is lost, try to reconnect (and resume) up to N times "
        "in a row before giving up; 0 never reconnects (default: %(default)s)",
    )
    parser.add_argument(
        "--confirm-timeout",
        metavar="SECONDS",
        type=_confirmTimeout,
        default=DEFAULT_CONFIRM_TIMEOUT,
        help="when quitting, give up waiting for the server to confirm what was sent after "
        "this long without a confirmation (default: %(default)g)",
    )
    parser.add_argument("--version", action="version", version="%(prog)s " + __version__)
    return parser


def _confirmTimeout(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds <= 3600:
        raise argparse.ArgumentTypeError("must be a number of seconds above 0, at most 3600, not %r" % (text,))
    return seconds


def _attempts(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = -1
    if not 0 <= n <= 1000:
        raise argparse.ArgumentTypeError("must be a whole number from 0 to 1000, not %r" % (text,))
    return n


class Settings:
    """
    What the command line asked for, checked.
    """

    def __init__(
        self,
        target: Target,
        nick: str | None = None,
        creator: IOpenSSLClientConnectionCreator | None = None,
        warnings: list[str] | None = None,
        reconnectAttempts: int = 8,
        confirmTimeout: float = DEFAULT_CONFIRM_TIMEOUT,
    ) -> None:
        self.target = target
        self.nick = nick
        self.creator = creator
        self.warnings = warnings or []
        self.reconnectAttempts = reconnectAttempts
        self.confirmTimeout = confirmTimeout


def parseCommandLine(argv: list[str]) -> Settings:
    """
    Parse and check C{argv}; raise L{BadURL} or L{OptionError} with a
    one-line reason (argparse itself exits for unknown options).
    """
    args = makeParser().parse_args(argv)
    target = parseTarget(args.url)
    nick = args.nick
    if nick is not None:
        try:
            checkNick(nick)
        except ChatError as e:
            raise OptionError("bad --nick %r: %s" % (nick, e.message))
    warnings = []
    creator = None
    if args.insecure and args.cafile:
        raise OptionError("--insecure and --cafile exclude each other")
    if target.secure:
        if args.insecure:
            warnings.append("warning: --insecure: the server's certificate is NOT verified")
        creator = tlsCreator(target, args.insecure, args.cafile)
    elif args.insecure or args.cafile:
        option = "--insecure" if args.insecure else "--cafile"
        warnings.append("warning: %s has no effect on %s:// (no TLS)" % (option, target.scheme))
    return Settings(target, nick, creator, warnings, args.reconnect_attempts, args.confirm_timeout)


def statusObserver(ui: ChatUI) -> FilteringLogObserver:
    """
    A log observer that shows warnings and errors (of the client, Twisted
    or Autobahn) to the user as statuses; lesser events are dropped.
    """

    def observe(event: dict[str, Any]) -> None:
        text = eventAsText(event, includeTimestamp=False, includeSystem=False)
        ui.showStatus(text.rstrip("\n"))

    return FilteringLogObserver(
        cast(ILogObserver, observe), [LogLevelFilterPredicate(defaultLogLevel=LogLevel.warn)]
    )


async def run(reactor: Any, settings: Settings, ui: ChatUI, closeTimeout: float = 2.0) -> NoReturn:
    """
    Run one session: connect, pass lines both ways until it ends, close the
    UI (waiting at most C{closeTimeout} seconds for its output to drain),
    and exit (C{SystemExit}) with the session's status.
    """
    client = ChatClient(
        settings.target,
        ui,
        reactor,
        reconnectAttempts=settings.reconnectAttempts,
        confirmTimeout=settings.confirmTimeout,
    )
    ui.start(client, reactor)
    connect(reactor, client, settings.nick, settings.creator)
    status = await client.done
    closing = ui.close()
    closing.addTimeout(closeTimeout, reactor)
    try:
        await closing
    except DeferredTimeoutError:
        pass
    raise SystemExit(status)


def main(argv: list[str] | None = None) -> NoReturn:
    """
    The C{twisted-chat} console script: parse the command line, run the
    session under the reactor and exit with its status (see L{ChatClient}):
    0 after C{/quit}, C{bye} or the end of input, with everything sent
    confirmed by the server (within C{--confirm-timeout} seconds); 3 the
    same, but something was refused (an C{!!! } line); 1 when something
    sent was not confirmed, the connection cannot be made or the server
    closes it (in WebSocket json mode: when reconnecting failed
    C{--reconnect-attempts} times in a row); 2 for a bad command line.
    """
    if argv is None:
        argv = sys.argv[1:]
    try:
        settings = parseCommandLine(argv)
    except (BadURL, OptionError) as e:
        writeStderr("error: %s" % (e,))
        raise SystemExit(2)
    for warning in settings.warnings:
        writeStderr(warning)

    from twisted.internet.task import react

    ui: ChatUI
    if os.isatty(0) and os.isatty(1):
        from twisted_chat.client.tty import TerminalUI

        tty = TerminalUI()
        ui = tty
        globalLogBeginner.beginLoggingTo([statusObserver(ui)], redirectStandardIO=False)
        with tty.rawMode():
            react(run, [settings, ui])
    else:
        ui = PipeUI()
        globalLogBeginner.beginLoggingTo([statusObserver(ui)], redirectStandardIO=False)
        with _restoreBlocking(0, 1):
            react(run, [settings, ui])
    raise SystemExit(0)  # not reached: react exits


class _restoreBlocking:
    """
    Put the given file descriptors back into blocking mode on exit, as
    StandardIO leaves them non-blocking and they are shared with the shell.
    """

    def __init__(self, *fds: int) -> None:
        self.fds = fds
        self.saved: dict[int, int] = {}

    def __enter__(self) -> _restoreBlocking:
        import fcntl

        for fd in self.fds:
            try:
                self.saved[fd] = fcntl.fcntl(fd, fcntl.F_GETFL)
            except OSError:
                pass
        return self

    def __exit__(self, *exc: object) -> None:
        import fcntl

        for fd, flags in self.saved.items():
            try:
                fcntl.fcntl(fd, fcntl.F_SETFL, flags)
            except OSError:
                pass


if __name__ == "__main__":
    # Run the module under its real name, so that there is one copy of it.
    from twisted_chat.client.main import main as _main

    _main()
