# -*- test-case-name: tests.client.test_session,tests.client.test_links -*-
"""
One session of the terminal client, whatever it connects with and whoever
types: L{ChatClient} forwards typed lines to the link, handles C{/quit},
C{bye} and the end of input, reconnects a link that can resume, waits for
the server to confirm what was sent, and settles the exit status.

It talks to the server through a L{ChatLink} (L{twisted_chat.client.links})
and to the user through a L{ChatUI} (L{twisted_chat.client.ui}); it does no
I/O of its own.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Callable, Protocol as TypingProtocol

from twisted.internet import error as neterror
from twisted.internet.defer import Deferred, TimeoutError as DeferredTimeoutError
from twisted.python.failure import Failure

from twisted_chat.client.target import Target
from twisted_chat.client.typed import describeInput, quitRequest
from twisted_chat.client.ui import ChatUI
from twisted_chat.wire.render import oneLine, plural

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall, IProtocol, IReactorTime

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
    if e is None:  # (never: a Failure holds an exception)
        return "unknown error"
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
        self.connecting: Deferred[IProtocol] | None = None
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
                % (plural(waiting, self._unit()), _seconds(self.confirmTimeout))
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
        return [describeInput(line) for line in self._queue if line.strip()]

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

    def showActivity(self, text: str) -> None:
        """
        Show what happens in the current room (who is typing) in the status
        line: C{""} empties it.
        """
        if not self._finished:
            self.ui.showActivity(text)

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
                self._finish(1, "%s (gave up after %s)" % (what, plural(self._failures, "attempt")))
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
                    % (plural(count, self._unit()), "it" if count == 1 else "they"),
                )
            if notSent:
                self._list(len(notSent), notSent, "%s typed but not sent:" % (plural(len(notSent), "line"),))
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
