# -*- test-case-name: tests.test_service -*-
"""
The one exception type the chat service raises for requests it refuses.
"""

from __future__ import annotations


class ChatError(Exception):
    """
    A request was refused; nothing changed.

    C{code} is machine-readable (it travels in json-mode C{error} events),
    C{message} is for people (it travels in C{!!! } lines).
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return self.message
