# -*- test-case-name: tests.daemon.test_tap -*-
"""
The reactor C{twistd chat} runs on: what the daemon needs of it
(L{IDaemonReactor}) and the process's own reactor (L{processReactor}).

C{makeService} is given no reactor by twistd (the process's reactor is
meant) and a memory reactor by the tests; every part of the tree is then
given the one resolved here, as a clock, a listener's reactor or a
process spawner.
"""

from __future__ import annotations

from typing import cast

from twisted.internet.interfaces import (
    IReactorCore,
    IReactorFDSet,
    IReactorFromThreads,
    IReactorProcess,
    IReactorSocket,
    IReactorTime,
)


class IDaemonReactor(IReactorCore, IReactorTime, IReactorFromThreads, IReactorSocket, IReactorProcess, IReactorFDSet):
    """
    A make-believe interface, for the type checker only: the parts of a
    reactor the daemon uses (its life cycle, time, calls from threads for
    the SQLite store, adopting a parent's listening sockets, spawning
    workers, watching a worker's pipe from its parent). Every POSIX reactor provides them all; the tests' memory
    reactors provide those their tests use.
    """


def processReactor() -> IDaemonReactor:
    """
    The reactor of this process (installed by twistd or twist by the time
    the service tree is built).
    """
    from twisted.internet import reactor

    # (Twisted types the global reactor as its common interfaces only; a
    # POSIX reactor provides the rest of IDaemonReactor too)
    return cast(IDaemonReactor, reactor)
