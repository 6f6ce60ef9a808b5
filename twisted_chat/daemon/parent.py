# -*- test-case-name: tests.daemon.test_tap,tests.daemon.test_workers -*-
"""
The service tree of a C{twistd chat --workers N} parent (L{makeParent}).

The parent binds every C{--line}, C{--web} and C{--irc} address itself, never
accepting on them, and runs N worker processes
(L{twisted_chat.daemon.workers.WorkerPool}) that adopt those sockets and
serve. It runs no chat service.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from typing import TYPE_CHECKING

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.protocol import Protocol, ServerFactory

from twisted_chat.daemon.control import Daemon
from twisted_chat.daemon.listeners import Listener
from twisted_chat.daemon.options import SHARED_FRONTENDS, Options, checkBroker
from twisted_chat.daemon.workers import FIRST_INHERITED_FD, WorkerPool

if TYPE_CHECKING:
    from twisted_chat.daemon.runtime import IDaemonReactor

#: seconds a worker has, beyond --shutdown-timeout, to exit on SIGTERM
#: before its parent sends SIGKILL
WORKER_STOP_MARGIN = 5.0


def makeParent(config: Options, reactor: IDaemonReactor, process: bool) -> MultiService:
    """
    The tree of a C{--workers} parent: the L{Daemon} (which passes SIGHUP
    on to the workers), a listener for every --line, --web and --irc address
    (bound and logged as a node's, never accepting), and the pool of
    workers, each given those sockets. C{process}: whether C{reactor} is
    this process's own (see L{Daemon}).
    """
    checkBroker(config["broker-url"])
    top = MultiService()
    daemon = Daemon(reactor, process=process)
    daemon.config = config
    daemon.setServiceParent(top)
    shared: list[tuple[str, Listener]] = []
    for frontend in SHARED_FRONTENDS:
        for description in config[frontend]:
            listener = Listener(frontend, description, _NOBODY, reactor, serve=False)
            listener.setServiceParent(top)
            shared.append((frontend, listener))
    inherit = ",".join("%s=%d" % (frontend, FIRST_INHERITED_FD + i) for i, (frontend, _) in enumerate(shared))

    def inherited() -> dict[int, int]:
        return {FIRST_INHERITED_FD + i: listener.fileno() for i, (_, listener) in enumerate(shared)}

    # (the workers' private sockets, and the parent's count of every
    # worker's connections in the same directory: limits for the machine)
    peers = PeerDirectory()
    peers.setServiceParent(top)
    from twisted_chat.daemon.machine import MachineCounter

    MachineCounter(lambda: peers.path, reactor).setServiceParent(peers)

    def arguments(index: int) -> list[str]:
        return workerCommand(config, index, inherit, peers.path)

    pool = WorkerPool(
        config["workers"],
        arguments,
        inherited,
        reactor,
        grace=config["shutdown-timeout"] + WORKER_STOP_MARGIN,
    )
    daemon.workers = pool
    # (in the directory's tree: it is removed once the workers have stopped)
    pool.setServiceParent(peers)
    return top


def workerCommand(config: Options, index: int, inherit: str, peers: str | None = None) -> list[str]:
    """
    The command line of worker C{index}: C{twistd chat} run by this
    interpreter, with the parent's reactor, in the foreground, logging
    through the relay the parent reads, with the worker's options
    (C{inherit}: its --inherit-fds value).
    """
    twistd = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]
    twistd += ["--nodaemon", "--pidfile=", "--logger=twisted_chat.daemon.workers.relayObserver"]
    # (twistd's own options, --reactor among them, are the parent's of ours)
    reactorName = (getattr(config, "parent", None) or {}).get("reactor")
    if reactorName:
        twistd.append("--reactor=" + reactorName)
    return twistd + ["chat"] + config.workerArguments(index, inherit, peers)


class PeerDirectory(MultiService):
    """
    The directory of the workers' private sockets (where a worker relays a
    Socket.IO request to the sibling that owns its session, and the
    parent's count of connections): made private (mode 0700) under the
    temporary directory when the parent starts, before its children (the
    count, the workers) start; removed once they have all stopped.
    """

    def __init__(self) -> None:
        MultiService.__init__(self)
        self.path: str | None = None

    def privilegedStartService(self) -> None:
        self._make()
        MultiService.privilegedStartService(self)

    def startService(self) -> None:
        self._make()
        MultiService.startService(self)

    def _make(self) -> None:
        if self.path is None:
            self.path = tempfile.mkdtemp(prefix="twisted-chat-")

    def stopService(self) -> Deferred[None]:
        d: Deferred[object] = maybeDeferred(MultiService.stopService, self)

        def remove(result: object) -> None:
            path, self.path = self.path, None
            if path is not None:
                shutil.rmtree(path, ignore_errors=True)

        return d.addBoth(remove)


class _Nobody(Protocol):
    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.loseConnection()


class _ForTheWorkers(ServerFactory):
    """
    The factory of a parent's listening ports: they never accept (their
    workers do), so it never builds a protocol.
    """

    protocol = _Nobody
    noisy = False

    def logPrefix(self) -> str:
        return "for the workers"


_NOBODY = _ForTheWorkers()
