# -*- test-case-name: tests.core.test_service -*-
"""
The in-process broker: one node, nothing to share.
"""

from __future__ import annotations

from typing import Any

from zope.interface import implementer

from twisted_chat.core.interfaces import IBroker, IClusterEvents, IMessageStore


@implementer(IBroker)
class LocalBroker:
    """
    The default broker of a single process: every member is local, a room
    message is delivered as soon as it is stored.
    """

    def __init__(self, store: IMessageStore | None = None) -> None:
        #: where private messages are kept (the service's store)
        self.store = store
        self.events: IClusterEvents = None  # type: ignore[assignment]

    def attach(self, events: IClusterEvents) -> None:
        self.events = events

    def remoteNick(self, key: str) -> str | None:
        return None

    def remoteRoomNicks(self, room: str, limit: int | None = None) -> list[str]:
        return []

    def remoteRoomCount(self, room: str) -> int:
        return 0

    def remoteRooms(self) -> dict[str, int]:
        return {}

    def remoteInRoom(self, key: str, room: str) -> bool:
        return False

    def nextGuest(self) -> int | None:
        return None

    def topicOf(self, room: str) -> tuple[str, str] | None:
        return None

    def memberAdded(self, member: Any, share: bool) -> None:
        pass

    def memberGone(self, member: Any) -> None:
        pass

    def joined(self, member: Any, room: str, event: Any) -> None:
        pass

    def parted(self, member: Any, room: str, event: Any) -> None:
        pass

    def nickChanged(self, member: Any, old: str, time: float) -> None:
        pass

    def topicChanged(self, event: Any) -> None:
        pass

    def deliveredUpTo(self, room: str) -> int | None:
        # (a stored message is delivered at once: never behind the store)
        return None

    def readUpTo(self, room: str, id: int) -> None:
        pass

    def receiving(self, room: str) -> None:
        # (every message is delivered here: nothing to wait for)
        return None

    def deliverMessage(self, message: Any) -> Any:
        self.events.deliverMessage(message)
        return message

    def appendPrivate(self, message: Any, ref: str | None) -> Any:
        assert self.store is not None, "a LocalBroker needs the service's store"
        return self.store.append(message, ref)

    def typing(self, room: str, nick: str, state: str) -> None:
        pass

    def readMarker(self, nick: str, room: str, id: int) -> None:
        pass

    def bansOf(self, room: str) -> dict[str, str]:
        return {}

    def banned(self, room: str, key: str, host: str, why: str) -> None:
        pass

    def unbanned(self, room: str, key: str) -> None:
        pass

    def opRemote(self, room: str, nick: str) -> bool:
        return False

    def kickRemote(self, op: Any, room: str, nick: str, why: str) -> bool:
        return False
