# -*- test-case-name: tests.client.test_cli,tests.e2e.test_e2e_client -*-
"""
C{twisted-chat}: the interactive terminal client's program.

    twisted-chat [--nick NAME] [--insecure | --cafile PATH] [URL]

It speaks the line chat over C{tcp://} and C{tls://}, and WebSocket json
mode over C{ws://} and C{wss://}; either way the user types and sees the
line chat (docs/protocol.md). On a terminal it edits the input line in raw
mode (L{twisted_chat.client.tty}); with piped input it sends each line it
reads and writes each line it receives, for scripts
(L{twisted_chat.client.pipe}). Over WebSocket a lost connection (or a
server going away) is reconnected with backoff, and the session resumes:
missed messages once, unacknowledged ones sent again. The session ends only
once the server has confirmed what was sent (or a bound passed), and the
exit status says whether everything went through.

Here: the command line (L{parseCommandLine} into L{Settings}), and L{main},
which runs one session (L{twisted_chat.client.session.ChatClient}) with its
link (L{twisted_chat.client.links}) and its UI. Nothing imports the reactor
at module level; L{main} runs it with L{twisted.internet.task.react}.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import NoReturn, cast

from twisted.internet.defer import TimeoutError as DeferredTimeoutError
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LogLevel,
    LogEvent,
    LogLevelFilterPredicate,
    eventAsText,
    globalLogBeginner,
)

from twisted_chat import __version__
from twisted_chat.client.links import connect
from twisted_chat.client.pipe import PipeUI
from twisted_chat.client.session import DEFAULT_CONFIRM_TIMEOUT, ChatClient
from twisted_chat.client.target import DEFAULT_URL, BadURL, Target, parseTarget
from twisted_chat.client.tls import OptionError, tlsCreator
from twisted_chat.client.ui import PROG, ChatUI, Reactor, writeStderr
from twisted_chat.core.errors import ChatError
from twisted_chat.core.names import checkNick

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

    def observe(event: LogEvent) -> None:
        text = eventAsText(event, includeTimestamp=False, includeSystem=False)
        ui.showStatus(text.rstrip("\n"))

    return FilteringLogObserver(
        cast(ILogObserver, observe), [LogLevelFilterPredicate(defaultLogLevel=LogLevel.warn)]
    )


async def run(reactor: Reactor, settings: Settings, ui: ChatUI, closeTimeout: float = 2.0) -> NoReturn:
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
    session under the reactor and exit with its status (see L{twisted_chat.client.session.ChatClient}):
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
