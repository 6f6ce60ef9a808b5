# -*- test-case-name: tests.client.test_cli,tests.e2e.test_e2e_client -*-
"""
The C{twisted-chat} console script's entry point (C{twisted_chat.client.main:main}),
also run as C{python -m twisted_chat.client.main}; the program itself is
L{twisted_chat.client.cli}.
"""

from __future__ import annotations

from twisted_chat.client.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    main()
