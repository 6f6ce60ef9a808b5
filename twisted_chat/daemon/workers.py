# -*- test-case-name: tests.daemon.test_workers -*-
"""
C{twistd chat --workers N}: one parent process, N worker processes.

The parent binds every line and web port itself, then runs N copies of
C{twistd chat} (the same options) that adopt those listening sockets: the
kernel hands each new connection to one of the workers, and the workers
share rooms, history and nicks through Redis (C{--broker}). The parent
serves nobody; it relays its workers' log events into its own log (tagged
C{w0}, C{w1}, …), restarts a worker that dies, forwards SIGHUP, and stops
them all on SIGTERM.

The worker side is here too: L{relayObserver} (the C{--logger} of a
worker: one JSON line per log event on its stdout, read by the parent) and
L{ParentWatch} (a worker stops when its parent is gone).
"""

from __future__ import annotations

import json
import os
import socket
import sys
from typing import IO, TYPE_CHECKING, Any, Callable

from twisted.application.service import Service
from twisted.internet import fdesc
from twisted.internet.abstract import FileDescriptor
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import ILogObserver, LogEvent, LogLevel, Logger, eventAsText, globalLogPublisher
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_chat import __version__

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall, IProcessTransport

    from twisted_chat.daemon.runtime import IDaemonReactor

#: the format of the line a C{twistd chat} process logs once it serves
#: (L{twisted_chat.daemon.control.Daemon}); the parent counts a worker ready on it
READY_FORMAT = "twisted-chat {version} ready"

#: restart back-off: first delay, longest delay, and how long a worker must
#: have lived for the next restart to start from the first delay again
RESTART_FIRST = 1.0
RESTART_MAX = 30.0
RESTART_RESET_AFTER = 60.0

#: longest line (bytes) of a worker's output kept whole; longer ones are cut
MAX_RELAYED_LINE = 1 << 20

#: the file descriptor of a worker's first inherited listening socket (0, 1
#: and 2 are its pipes to the parent)
FIRST_INHERITED_FD = 3


def shiftPort(description: str, offset: int) -> str:
    """
    C{description}, a C{tcp:}, C{tcp6:} or C{ssl:} server endpoint string,
    with its port moved up by C{offset} (worker I serves --metrics on the
    given port + I). Port 0 (any free port) stays 0. Raise C{ValueError} for
    other endpoint types or a port past 65535.
    """
    tokens = _splitEndpoint(description)
    kind = tokens[0].lower()
    if kind not in ("tcp", "tcp6", "ssl"):
        raise ValueError("only tcp:, tcp6: and ssl: endpoints can be given one port per worker, not %r" % (description,))
    for i, token in enumerate(tokens[1:], 1):
        if token.startswith("port="):
            prefix, value = "port=", token[len("port=") :]
        elif "=" not in token:
            prefix, value = "", token
        else:
            continue
        try:
            port = int(value)
        except ValueError:
            raise ValueError("no port number in %r" % (description,))
        if port == 0 or offset == 0:
            return description
        if port + offset > 65535:
            raise ValueError("%r: port %d + %d is past 65535" % (description, port, offset))
        tokens[i] = "%s%d" % (prefix, port + offset)
        return ":".join(tokens)
    raise ValueError("no port number in %r" % (description,))


def _splitEndpoint(description: str) -> list[str]:
    """
    Split an endpoint string on its unescaped colons, keeping every token's
    text (escapes included) as it was.
    """
    tokens: list[str] = []
    start = 0
    i = 0
    while i < len(description):
        c = description[i]
        if c == "\\":
            i += 2
            continue
        if c == ":":
            tokens.append(description[start:i])
            start = i + 1
        i += 1
    tokens.append(description[start:])
    return tokens


def socketFamily(fd: int) -> socket.AddressFamily:
    """
    The address family of the socket open as C{fd} (left open).
    """
    s = socket.socket(fileno=fd)
    try:
        return s.family
    finally:
        s.detach()


# -- the worker side ----------------------------------------------------------------


@implementer(ILogObserver)
class _RelayObserver:
    """
    Write every log event as one JSON line (time, namespace, level, system,
    text with any traceback, and the format) to C{out}: a worker's stdout,
    which its parent reads and re-logs.
    """

    def __init__(self, out: IO[str]) -> None:
        self._out = out

    def __call__(self, event: LogEvent) -> None:
        level = event.get("log_level")
        namespace = event.get("log_namespace") or "-"
        system = event.get("log_system")
        if system is None:
            system = "%s#%s" % (namespace, level.name if level is not None else "-")
        fmt = event.get("log_format")
        record = {
            "time": event.get("log_time"),
            "namespace": namespace,
            "level": level.name if level is not None else "info",
            "system": str(system),
            "text": eventAsText(event, includeTimestamp=False, includeSystem=False),
            "format": fmt if isinstance(fmt, str) else None,
        }
        try:
            self._out.write(json.dumps(record) + "\n")
            self._out.flush()
        except (OSError, ValueError):
            # the parent is gone (ParentWatch stops this worker)
            pass


def relayObserver() -> ILogObserver:
    """
    The log observer factory a worker is started with (C{twistd
    --logger=twisted_chat.daemon.workers.relayObserver}).
    """
    return _RelayObserver(sys.stdout)


class _PipeWatch(FileDescriptor):
    """
    Reads (and discards) a pipe; calls C{onClosed} at its end of file.
    """

    def __init__(self, fd: int, onClosed: Callable[[], None], reactor: IDaemonReactor) -> None:
        FileDescriptor.__init__(self, reactor)
        self._fd = fd
        self._onClosed = onClosed
        fdesc.setNonBlocking(fd)
        self.connected = 1

    def fileno(self) -> int:
        return self._fd

    def doRead(self) -> object:
        return fdesc.readFromFD(self._fd, lambda data: None)

    def connectionLost(self, reason: Failure) -> None:
        FileDescriptor.connectionLost(self, reason)
        self._onClosed()


class ParentWatch(Service):
    """
    In a worker: stop once the parent is gone. The parent holds the write
    end of the worker's stdin and never writes to it, so its end of file
    means the parent has exited (even killed with SIGKILL); a worker left
    behind would serve on sockets nobody manages any more.
    """

    _log = Logger()

    def __init__(self, reactor: IDaemonReactor, fd: int = 0, cleanUp: Callable[[], object] | None = None) -> None:
        self._reactor = reactor
        self._fd = fd
        self._watch: _PipeWatch | None = None
        #: what the parent would have removed (its peer directory)
        self._cleanUp = cleanUp

    def startService(self) -> None:
        Service.startService(self)
        self._watch = _PipeWatch(self._fd, self._parentGone, self._reactor)
        self._watch.startReading()

    def _parentGone(self) -> None:
        if self._watch is None:
            return
        self._watch = None
        self._log.warn("the parent process is gone: stopping")
        if self._cleanUp is not None:
            self._cleanUp()
        self._reactor.stop()

    def stopService(self) -> None:
        Service.stopService(self)
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.stopReading()


# -- the parent side ----------------------------------------------------------------


class _Slot:
    """
    One worker place: its index and the process currently in it.
    """

    def __init__(self, index: int) -> None:
        self.index = index
        self.process: IProcessTransport | None = None
        self.pid: int | None = None
        self.startedAt = 0.0
        self.delay = RESTART_FIRST
        self.ready = False
        self.restart: IDelayedCall | None = None


class _WorkerProtocol(ProcessProtocol):
    """
    One worker process: its output is relayed line by line to the pool.
    """

    def __init__(self, pool: WorkerPool, slot: _Slot) -> None:
        self._pool = pool
        self._slot = slot
        self._buffers: dict[int, bytes] = {1: b"", 2: b""}

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        lines = (self._buffers.get(childFD, b"") + data).split(b"\n")
        rest = lines.pop()
        if len(rest) > MAX_RELAYED_LINE:
            lines.append(rest)
            rest = b""
        self._buffers[childFD] = rest
        for line in lines:
            self._pool._relay(self._slot, childFD, line)

    def processEnded(self, reason: Failure) -> None:
        for childFD, rest in sorted(self._buffers.items()):
            if rest:
                self._pool._relay(self._slot, childFD, rest)
        self._buffers = {}
        self._pool._ended(self._slot, self, reason)


class WorkerPool(Service):
    """
    Runs C{count} worker processes and keeps them running.

    C{arguments(index)} gives the command line of worker C{index} (its
    first item is the executable); C{inherited()} the listening sockets
    every worker gets, as {file descriptor in the worker: file descriptor
    here}. A worker that exits while the pool runs is restarted after a
    back-off (1 s, doubling up to 30 s; back to 1 s once a worker has lived
    a minute). Stopping sends SIGTERM to every worker and waits for them
    all, at most C{grace} seconds, then sends SIGKILL.
    """

    name = "workers"
    _log = Logger()

    def __init__(
        self,
        count: int,
        arguments: Callable[[int], list[str]],
        inherited: Callable[[], dict[int, int]],
        reactor: IDaemonReactor,
        grace: float,
        environment: dict[str, str] | None = None,
        publisher: Callable[[LogEvent], None] | None = None,
    ) -> None:
        self.slots = [_Slot(i) for i in range(count)]
        self._arguments = arguments
        self._inherited = inherited
        self._reactor = reactor
        self.grace = grace
        self._environment = environment
        self._publish = publisher if publisher is not None else globalLogPublisher
        self._stopping = False
        self._allReady = False
        self._stopped: Deferred[None] | None = None
        self._kill: IDelayedCall | None = None

    def startService(self) -> None:
        Service.startService(self)
        self._stopping = False
        for slot in self.slots:
            self._spawn(slot)
        self._log.info(
            "workers: {count} started (pids {pids})",
            count=len(self.slots),
            pids=" ".join(str(slot.pid) for slot in self.slots),
        )

    def _spawn(self, slot: _Slot) -> None:
        slot.restart = None
        slot.ready = False
        args = self._arguments(slot.index)
        childFDs: dict[int, int | str] = {0: "w", 1: "r", 2: "r"}
        childFDs.update(self._inherited())
        environment = dict(os.environ if self._environment is None else self._environment)
        try:
            process = self._reactor.spawnProcess(
                _WorkerProtocol(self, slot), args[0], args, env=environment, childFDs=childFDs
            )
        except Exception:
            self._log.failure("worker {index} could not be started", index=slot.index)
            self._scheduleRestart(slot)
            return
        slot.process = process
        slot.pid = process.pid
        slot.startedAt = self._reactor.seconds()
        self._log.info("worker {index} started (pid {pid})", index=slot.index, pid=slot.pid)

    def _relay(self, slot: _Slot, childFD: int, line: bytes) -> None:
        """
        Log one line of a worker's output here, as one of ours, tagged with
        its worker index: a JSON event from its stdout, or plain text (its
        stderr, or anything that is not an event).
        """
        record: Any = None  # (what json.loads made of the line: checked below)
        if childFD == 1:
            try:
                record = json.loads(line)
            except ValueError:
                record = None
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            text = line.decode("utf-8", "replace").rstrip("\r")
            if not text:
                return
            record = {
                "namespace": "twisted_chat.daemon.workers.stderr" if childFD == 2 else "twisted_chat.daemon.workers.stdout",
                "level": "error" if childFD == 2 else "info",
                "text": text,
            }
            record["system"] = "%s#%s" % (record["namespace"], record["level"])
        try:
            level = LogLevel.levelWithName(str(record.get("level")))
        except Exception:
            level = LogLevel.info
        when = record.get("time")
        self._publish(
            {
                "log_namespace": str(record.get("namespace") or "-"),
                "log_level": level,
                "log_time": when if isinstance(when, (int, float)) else self._reactor.seconds(),
                "log_system": "w%d:%s" % (slot.index, record.get("system") or "-"),
                "log_format": "{text}",
                "text": record["text"],
                "worker": slot.index,
                "worker_pid": slot.pid,
            }
        )
        if record.get("format") == READY_FORMAT and not slot.ready:
            slot.ready = True
            self._log.info("worker {index} (pid {pid}) ready", index=slot.index, pid=slot.pid)
            if not self._allReady and all(s.ready for s in self.slots):
                self._allReady = True
                self._log.info(
                    "twisted-chat {version} ready: {count} workers", version=__version__, count=len(self.slots)
                )

    def _ended(self, slot: _Slot, protocol: _WorkerProtocol, reason: Failure) -> None:
        status = getattr(reason.value, "exitCode", None)
        signum = getattr(reason.value, "signal", None)
        how = "was killed by signal %s" % (signum,) if signum is not None else "exited with status %s" % (status,)
        pid = slot.pid
        slot.process = None
        slot.ready = False
        if self._stopping:
            self._log.info("worker {index} (pid {pid}) stopped: {how}", index=slot.index, pid=pid, how=how)
            self._checkStopped()
            return
        self._log.error("worker {index} (pid {pid}) {how}", index=slot.index, pid=pid, how=how)
        if self._reactor.seconds() - slot.startedAt >= RESTART_RESET_AFTER:
            slot.delay = RESTART_FIRST
        self._scheduleRestart(slot)

    def _scheduleRestart(self, slot: _Slot) -> None:
        delay = slot.delay
        slot.delay = min(delay * 2, RESTART_MAX)
        self._log.info("worker {index}: restarting in {delay:g} s", index=slot.index, delay=delay)
        slot.restart = self._reactor.callLater(delay, self._spawn, slot)

    def signalAll(self, signame: str) -> int:
        """
        Send the signal C{signame} ("HUP", "TERM", "KILL") to every running
        worker; return how many got it.
        """
        sent = 0
        for slot in self.slots:
            if slot.process is not None:
                try:
                    slot.process.signalProcess(signame)
                except ProcessExitedAlready:
                    continue
                sent += 1
        return sent

    def stopService(self) -> Deferred[None] | None:
        Service.stopService(self)
        self._stopping = True
        for slot in self.slots:
            if slot.restart is not None:
                if slot.restart.active():
                    slot.restart.cancel()
                slot.restart = None
        running = [s for s in self.slots if s.process is not None]
        if not running:
            return None
        self._stopped = Deferred()
        self._log.info("stopping {count} workers", count=len(running))
        self.signalAll("TERM")
        self._kill = self._reactor.callLater(self.grace, self._killAll)
        return self._stopped

    def _killAll(self) -> None:
        self._kill = None
        left = [s.index for s in self.slots if s.process is not None]
        self._log.warn(
            "workers {indexes} still running {grace:g} s after SIGTERM: sending SIGKILL",
            indexes=left,
            grace=self.grace,
        )
        self.signalAll("KILL")

    def _checkStopped(self) -> None:
        if self._stopped is None or any(s.process is not None for s in self.slots):
            return
        if self._kill is not None and self._kill.active():
            self._kill.cancel()
        self._kill = None
        d, self._stopped = self._stopped, None
        self._log.info("all workers stopped")
        d.callback(None)
