# -*- test-case-name: tests.frontends.irc.test_irc -*-
"""
The answer to one command of a client with C{labeled-response}: what the
server says in answer is gathered (L{Reply}) and sent at once when the
command is done, with the command's label: one line gets the C{label} tag,
one batch gets it on its start, nothing is an C{ACK}, and several lines
(or batches) go in a C{labeled-response} batch.
"""

from __future__ import annotations

from typing import Callable, Union

from twisted_chat.frontends.irc.protocol import SERVER_NAME, formatMessage, withTags

#: one line, or a whole batch (its lines, start and end included)
Unit = Union[str, list[str]]


class Reply:
    """
    What the server says in answer to one labeled command, until it is
    done; C{pending} counts the parts of the answer still to come: the
    command's handler itself until it returns, and what comes later (a
    message being stored, a history being read).
    """

    __slots__ = ("label", "units", "pending", "_send", "_batchId")

    def __init__(self, label: str, send: Callable[[str], None], batchId: Callable[[], str] | None) -> None:
        self.label = label
        self.units: list[Unit] = []
        self.pending = 1
        self._send = send
        #: a new batch reference, or None when the client has no C{batch}
        self._batchId = batchId

    def add(self, unit: Unit) -> None:
        self.units.append(unit)

    def later(self) -> None:
        """
        A part of the answer comes later: L{done} says when it came.
        """
        self.pending += 1

    def done(self) -> None:
        """
        A part that came later is there (see L{later}): once every part
        is, the answer is sent.
        """
        self.pending -= 1
        if self.pending <= 0:
            self.flush()

    def flush(self) -> None:
        """
        Send the answer, labeled.
        """
        units, self.units = self.units, []
        tag = {"label": self.label}
        send = self._send
        if not units:
            send(withTags(formatMessage("ACK", source=SERVER_NAME), tag))
            return
        if len(units) == 1:
            unit = units[0]
            if isinstance(unit, str):
                send(withTags(unit, tag))
            else:
                send(withTags(unit[0], tag))
                for line in unit[1:]:
                    send(line)
            return
        if self._batchId is None:
            # (no batch to put them in: the first line carries the label)
            first = True
            for unit in units:
                for line in [unit] if isinstance(unit, str) else unit:
                    send(withTags(line, tag) if first else line)
                    first = False
            return
        ref = self._batchId()
        send(withTags(formatMessage("BATCH", ["+" + ref, "labeled-response"], SERVER_NAME), tag))
        inner = {"batch": ref}
        for unit in units:
            if isinstance(unit, str):
                send(withTags(unit, inner))
            else:
                # (a batch nested in this one: only its start and end say so)
                send(withTags(unit[0], inner))
                for line in unit[1:-1]:
                    send(line)
                send(withTags(unit[-1], inner))
        send(formatMessage("BATCH", ["-" + ref], SERVER_NAME))

