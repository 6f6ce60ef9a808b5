# -*- test-case-name: tests.frontends.irc.test_irc -*-
"""
IRCv3 capabilities: which the chat offers, and one connection's
negotiation of them (C{CAP LS}, C{LIST}, C{REQ}, C{END}).

What each one does here is in docs/protocol.md ("IRC"): C{server-time}
stamps what the server relays, C{message-tags} adds C{msgid} (a room
message's room, epoch and id), C{echo-message} returns a client's own
messages once stored, C{batch}, C{labeled-response}, C{draft/chathistory}
(the C{CHATHISTORY} command; without it, a room's recent history is played
back on join), C{draft/event-playback} (the reactions of the messages of
a history batch come after them, as C{TAGMSG}s), C{draft/message-redaction} (C{REDACT}), C{draft/read-marker}
(C{MARKREAD}; see L{twisted_chat.frontends.irc.drafts}), C{away-notify}, C{account-tag}, C{multi-prefix} (our one
prefix, C{@}) and C{sasl} (C{PLAIN}, only on a server with registered
nicks).
"""

from __future__ import annotations

#: what the chat offers (C{sasl} only with --auth): name -> its value in
#: C{CAP LS 302}
OFFERED: dict[str, str] = {
    "account-tag": "",
    "away-notify": "",
    "batch": "",
    "draft/message-redaction": "",
    "draft/read-marker": "",
    "draft/chathistory": "",
    "draft/event-playback": "",
    "echo-message": "",
    "labeled-response": "",
    "message-tags": "",
    "multi-prefix": "",
    "sasl": "PLAIN",
    "server-time": "",
}


class Capabilities:
    """
    The capabilities one connection has enabled, and where its
    negotiation stands.
    """

    __slots__ = ("enabled", "negotiating", "version")

    def __init__(self) -> None:
        self.enabled: set[str] = set()
        #: whether a C{CAP LS} or C{REQ} before registration holds it back
        #: until C{CAP END}
        self.negotiating = False
        #: the CAP version the client announced (C{LS 302}: 302)
        self.version = 0

    def has(self, name: str) -> bool:
        return name in self.enabled

    @staticmethod
    def offered(sasl: bool) -> list[str]:
        """
        The names offered, sorted (C{sasl} only when C{sasl} is true).
        """
        return [name for name in sorted(OFFERED) if sasl or name != "sasl"]

    def listed(self, sasl: bool) -> str:
        """
        What C{CAP LS} answers: the names offered, with their values for a
        client that asked with version 302 or later.
        """
        names = self.offered(sasl)
        if self.version >= 302:
            return " ".join(name + "=" + OFFERED[name] if OFFERED[name] else name for name in names)
        return " ".join(names)

    def request(self, asked: str, sasl: bool) -> bool:
        """
        C{CAP REQ}: enable (or, with C{-}, disable) every capability named
        in C{asked}, or none if one of them is not offered; returns whether
        they were.
        """
        offered = self.offered(sasl)
        changes = []
        for word in asked.split():
            name = word[1:] if word.startswith("-") else word
            if name not in offered:
                return False
            changes.append((word.startswith("-"), name))
        if not changes:
            return False
        for off, name in changes:
            if off:
                self.enabled.discard(name)
            else:
                self.enabled.add(name)
        return True
