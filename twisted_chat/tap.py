# -*- test-case-name: tests.daemon.test_tap -*-
"""
The entry point C{twistd chat} looks for (see C{twisted_plugins/chat.py}):
the command line's L{Options} and L{makeService}, which builds the service
tree of a node or of a C{--workers} parent. Everything else is in
L{twisted_chat.daemon}.
"""

from twisted_chat.daemon.app import Options, makeService

__all__ = ["Options", "makeService"]
