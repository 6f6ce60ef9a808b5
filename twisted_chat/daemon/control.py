# -*- test-case-name: tests.daemon.test_ops,tests.daemon.test_tap,tests.e2e.test_e2e_tls -*-
"""
The process-level behaviour of C{twistd chat}: the L{Daemon} service logs
when it is ready, handles SIGHUP (reloading the auth and limits files, or
passing the signal on to a parent's workers), makes a graceful SIGTERM
shutdown exit with status 0, freezes the start-up objects out of the
garbage collector's view, and keeps the recent errors for C{/status}.
"""

from __future__ import annotations

import gc
import signal
from types import FrameType
from typing import TYPE_CHECKING, Protocol, cast

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.error import ReactorNotRunning
from twisted.logger import ILogObserver, Logger, globalLogPublisher
from twisted.python.failure import Failure

from twisted_chat import __version__
from twisted_chat.daemon.options import Options, readLimits
from twisted_chat.daemon.workers import READY_FORMAT

if TYPE_CHECKING:
    from twisted_chat.core.service import ChatService
    from twisted_chat.core.stats import RecentErrors
    from twisted_chat.daemon.runtime import IDaemonReactor
    from twisted_chat.frontends.line import LineChatFactory


class _Workers(Protocol):
    """
    What the daemon uses of a parent's L{twisted_chat.daemon.workers.WorkerPool}.
    """

    def signalAll(self, signame: str) -> int: ...


def freezeStartupObjects() -> None:
    """
    Take the objects of start-up (modules, classes, functions: most of the
    process's objects, for its whole life) out of the garbage collector's
    view: every full collection walked them all, a reactor stall of tens of
    milliseconds each time (see docs/benchmarks.md). Garbage made later is
    collected as before.
    """
    gc.collect()
    gc.freeze()


class ExitZeroOnSIGTERM:
    """
    SIGTERM handled as the reactor's own handler does (log it, stop the
    reactor), except that the signal is not recorded, so that the graceful
    shutdown it asks for ends with exit status 0.

    Why: once the reactor has stopped, twistd (and twist) kill the process
    again with the signal the reactor recorded, so that it looks killed by
    it (status 143, "failed" to systemd and to our --workers parent), even
    though every connection was closed in good order. Twisted has no public
    way to choose the exit status: the record is the reactor's private
    C{_exitSignal}, which this daemon used to reset. Instead, the reactor's
    handler is replaced, with the standard C{signal} module, by this one,
    which never records anything. SIGINT keeps the reactor's handler (a
    Ctrl-C still ends the process as interrupted).

    A SIGTERM while already shutting down is logged and changes nothing.
    """

    _log = Logger()

    def __init__(self, reactor: IDaemonReactor) -> None:
        self._reactor = reactor

    def install(self) -> None:
        """
        Take SIGTERM over from the reactor. Call once the reactor runs: it
        installs its handlers as it starts. A reactor run without signal
        handlers (C{installSignalHandlers=False}) is left so.
        """
        if callable(signal.getsignal(signal.SIGTERM)):
            signal.signal(signal.SIGTERM, self._received)

    def _received(self, signum: int, frame: FrameType | None) -> None:
        # (a signal handler: the work is done in the reactor's thread)
        self._reactor.callFromThread(self.stop)

    def stop(self) -> None:
        """
        Stop the reactor, unless it is stopping already.
        """
        try:
            self._reactor.stop()
        except ReactorNotRunning:
            self._log.info("Received SIGTERM again: already shutting down.")
        else:
            self._log.info("Received SIGTERM, shutting down.")


class Daemon(Service):
    """
    Process-level behaviour of C{twistd chat}.

    It logs C{ready} once the reactor runs (signal handlers are installed by
    then, so a SIGTERM from that moment on gets a graceful shutdown), and it
    makes a graceful SIGTERM shutdown exit with status 0
    (L{ExitZeroOnSIGTERM}).

    In a cluster (C{--broker}) it logs C{ready} once the shared state is
    loaded from Redis instead. In a C{--workers} parent it passes SIGHUP on
    to the workers (whose pool logs when they are all ready); in a worker
    it leaves SIGINT to the parent and ignores more signals once stopping.
    """

    _log = Logger()

    def __init__(self, reactor: IDaemonReactor, process: bool = False) -> None:
        self._reactor = reactor
        #: whether C{reactor} is this process's own (twistd's): only then
        #: are signal handlers installed and the garbage collector tuned
        self.process = process
        self.config: Options | None = None
        self.chat: ChatService | None = None
        self.lineFactory: LineChatFactory | None = None
        #: the recent warnings and errors, for /status (observes the log
        #: while the daemon runs)
        self.recentErrors: RecentErrors | None = None
        #: in a cluster: fires once the shared state is loaded from Redis
        self.ready: Deferred[None] | None = None
        self.brokerName = ""
        #: in a --workers parent: the workers (SIGHUP is passed on to them)
        self.workers: _Workers | None = None
        #: in a worker: its index
        self.worker: int | None = None

    def privilegedStartService(self) -> None:
        Service.privilegedStartService(self)
        if self.worker is not None and self.process:
            # A Ctrl-C in a terminal reaches the whole process group: the
            # parent stops its workers itself. (Before the reactor runs: it
            # leaves an ignored SIGINT alone.)
            signal.signal(signal.SIGINT, signal.SIG_IGN)

    def _ignoreMoreSignals(self) -> None:
        """
        A worker being stopped ignores more SIGTERMs (say its parent's and
        systemd's both) instead of logging a traceback for each; its parent
        sends SIGKILL if it takes too long.
        """
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    def startService(self) -> None:
        Service.startService(self)
        if self.process:
            self._takeOverTheProcess()
        if self.workers is not None:
            # the parent: the pool says when all its workers are ready
            pass
        elif self.ready is not None:
            self._log.info("waiting for Redis at {broker}", broker=self.brokerName)
            self.ready.addCallbacks(self._clusterReady, self._clusterFailed)
        else:
            self._reactor.callWhenRunning(self._announce)
        if self.recentErrors is not None:
            globalLogPublisher.addObserver(_asObserver(self.recentErrors))

    def _takeOverTheProcess(self) -> None:
        """
        What only the process's own daemon does: SIGTERM (taken over once
        the reactor runs, before the announcement that the daemon is ready,
        as calls registered with C{callWhenRunning} run in order), SIGHUP,
        and freezing the start-up objects.
        """
        reactor = self._reactor
        reactor.callWhenRunning(ExitZeroOnSIGTERM(reactor).install)
        reactor.callWhenRunning(freezeStartupObjects)
        if self.worker is not None:
            reactor.addSystemEventTrigger("before", "shutdown", self._ignoreMoreSignals)
        if hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, lambda *_: reactor.callFromThread(self.reload))

    def _announce(self) -> None:
        self._log.info(READY_FORMAT, version=__version__)

    def _clusterReady(self, result: object) -> object:
        # (the reactor runs: Redis was reached through it)
        self._log.info("Redis at {broker} ready: accepting connections", broker=self.brokerName)
        self._announce()
        return result

    def _clusterFailed(self, f: Failure) -> None:
        self._log.failure("the shared state could not be loaded from Redis at {broker}: stopping", f, broker=self.brokerName)
        if self.running:
            self._reactor.stop()

    def reload(self) -> None:
        """
        SIGHUP: read the auth file and the limits file again and put them
        into effect, keeping every connection. A file with an error is
        reported and ignored; what was in effect stays. A --workers parent
        passes the signal on to its workers.
        """
        if self.workers is not None:
            count = self.workers.signalAll("HUP")
            self._log.info("SIGHUP: passed on to {count} workers", count=count)
            return
        config, chat = self.config, self.chat
        if config is None or chat is None:
            return
        self._log.info("SIGHUP: reloading")
        if config["auth"]:
            self._reloadPasswords(config["auth"], chat)
        if config["limits"]:
            self._reloadLimits(config["limits"], chat)

    def _reloadPasswords(self, path: str, chat: ChatService) -> None:
        """
        Read the auth file again; keep the passwords in effect if it has an
        error or lacks an admin.
        """
        from twisted_chat.core.auth import AuthFileError, loadPasswords

        try:
            passwords = loadPasswords(path)
        except AuthFileError as e:
            self._log.error("reload: auth file not reloaded: {why}", why=str(e))
            return
        missing = [a for a in chat.admins if a not in passwords]
        if missing:
            self._log.error("reload: auth file not reloaded: admins {admins} are missing", admins=missing)
            return
        chat.passwords = passwords
        self._log.info("reload: {count} registered nicks", count=len(passwords))

    def _reloadLimits(self, path: str, chat: ChatService) -> None:
        """
        Read the limits file again and put it into effect; keep the limits
        in effect if it has an error.
        """
        try:
            limits = readLimits(path, {})
        except ValueError as e:
            self._log.error("reload: limits not reloaded: {why}", why=str(e))
            return
        # One object that the service and every front-end read: the new
        # values reach them all (docs/operations.md says when each applies
        # to open connections).
        chat.settings.update(limits)
        self._log.info("reload: limits {limits}", limits=limits)

    def stopService(self) -> None:
        Service.stopService(self)
        if self.recentErrors is not None:
            globalLogPublisher.removeObserver(_asObserver(self.recentErrors))


def _asObserver(recentErrors: RecentErrors) -> ILogObserver:
    """
    C{recentErrors} as the log publisher takes it: a log observer by its
    shape (C{core.stats} does not import C{twisted.logger} to declare it).
    """
    return cast(ILogObserver, recentErrors)
