# -*- test-case-name: tests.daemon.test_tap -*-
"""
C{twistd chat}'s service tree (L{makeService}): one node's
(L{twisted_chat.daemon.node}), or, with C{--workers} N > 1, a parent's
that runs N workers (L{twisted_chat.daemon.parent}).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.application.service import MultiService

from twisted_chat.daemon.node import makeNode
from twisted_chat.daemon.options import Options
from twisted_chat.daemon.parent import makeParent
from twisted_chat.daemon.runtime import processReactor

if TYPE_CHECKING:
    from twisted_chat.daemon.runtime import IDaemonReactor

__all__ = ["Options", "makeService"]


def makeService(config: Options, reactor: IDaemonReactor | None = None) -> MultiService:
    """
    Build the service tree for C{twistd chat}: a parent's with C{--workers}
    N > 1, else one node's. Without C{reactor} (as twistd calls it) the
    tree runs on this process's reactor and owns the process: its signals,
    its exit status, its garbage collector.
    """
    process = reactor is None
    if reactor is None:
        reactor = processReactor()
    if config.get("workers", 1) > 1 and config.get("worker") is None:
        return makeParent(config, reactor, process)
    return makeNode(config, reactor, process)
