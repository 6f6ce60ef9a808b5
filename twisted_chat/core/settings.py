# -*- test-case-name: tests.core.test_settings -*-
"""
The tunable limits of one node, in one object.

The service and every front-end (line chat, WebSocket text and json modes,
Socket.IO on polling and on WebSocket, and whatever front-end comes next)
read a limit from the service's L{Settings} when they need it, never from a
copy taken when a factory or a connection was made. A reload (SIGHUP)
replaces values in that one object, so it reaches every front-end at once;
see docs/operations.md ("Reloading and checking") for when each limit
applies to connections that are already open.
"""

from __future__ import annotations

from typing import Any, Mapping

#: option name (of C{twistd chat} and of a --limits file) -> attribute of
#: L{Settings}: every limit a --limits file may set and SIGHUP reloads
OPTIONS: dict[str, str] = {
    "flood-rate": "floodRate",
    "flood-burst": "floodBurst",
    "flood-kick": "floodKick",
    "max-connections": "maxConnections",
    "max-per-ip": "maxPerHost",
    "max-rooms": "maxRoomsPerMember",
    "max-message-length": "maxTextLength",
    "max-line-length": "maxLineLength",
    "idle-timeout": "idleTimeout",
    "max-outgoing": "maxOutgoing",
    "history-size": "historySize",
}


class Settings:
    """
    The limits in effect, read live by the service and the front-ends.

    The defaults are the library's (no flood control, no connection limits);
    C{twistd chat} fills the object from its options (L{fromOptions}) and
    changes it on reload (L{update}).
    """

    __slots__ = tuple(OPTIONS.values())

    #: requests a second per connection (0: no flood control)
    floodRate: float
    #: requests a connection may make at once before it is slowed down
    floodBurst: float
    #: the most requests a connection may have waiting for flood control;
    #: past it, it is disconnected (see L{twisted_chat.core.limits})
    floodKick: float
    #: connections in all (0: no limit)
    maxConnections: int
    #: connections from one address (0: no limit)
    maxPerHost: int
    #: rooms one connection may be in
    maxRoomsPerMember: int
    #: characters in one message
    maxTextLength: int
    #: bytes in one line of the line chat
    maxLineLength: int
    #: seconds without input before a line connection is closed (0: never)
    idleTimeout: float
    #: bytes queued for a client that does not read before it is dropped
    maxOutgoing: int
    #: messages of history sent on join
    historySize: int

    def __init__(
        self,
        floodRate: float = 0.0,
        floodBurst: float = 10.0,
        floodKick: float = 100.0,
        maxConnections: int = 0,
        maxPerHost: int = 0,
        maxRoomsPerMember: int = 50,
        maxTextLength: int = 4096,
        maxLineLength: int = 4096,
        idleTimeout: float = 600.0,
        maxOutgoing: int = 1 << 20,
        historySize: int = 50,
    ) -> None:
        self.floodRate = floodRate
        self.floodBurst = floodBurst
        self.floodKick = floodKick
        self.maxConnections = maxConnections
        self.maxPerHost = maxPerHost
        self.maxRoomsPerMember = maxRoomsPerMember
        self.maxTextLength = maxTextLength
        self.maxLineLength = maxLineLength
        self.idleTimeout = idleTimeout
        self.maxOutgoing = maxOutgoing
        self.historySize = historySize

    @classmethod
    def fromOptions(cls, options: Mapping[str, Any]) -> Settings:
        """
        The settings of C{twistd chat}'s parsed C{options} (which include
        what a --limits file set).
        """
        settings = cls()
        settings.update({name: options[name] for name in OPTIONS if name in options})
        return settings

    def update(self, limits: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
        """
        Put C{limits} (option name -> value, already checked) into effect;
        return what changed: option name -> (old value, new value). An
        unknown name raises C{KeyError} and changes nothing.
        """
        for name in limits:
            if name not in OPTIONS:
                raise KeyError("not a limit: %r" % (name,))
        changed = {}
        for name, value in limits.items():
            attribute = OPTIONS[name]
            old = getattr(self, attribute)
            if old != value:
                setattr(self, attribute, value)
                changed[name] = (old, value)
        return changed

    def asOptions(self) -> dict[str, Any]:
        """
        Every limit in effect, by option name.
        """
        return {name: getattr(self, attribute) for name, attribute in OPTIONS.items()}

    def __repr__(self) -> str:
        return "<Settings %s>" % (", ".join("%s=%r" % item for item in self.asOptions().items()),)
