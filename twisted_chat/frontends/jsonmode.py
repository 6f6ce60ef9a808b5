# -*- test-case-name: tests.frontends.test_websocket,tests.frontends.test_jsonmode_fuzz -*-
"""
WebSocket json mode (subprotocol C{chat.json}): requests and events as JSON
objects, one per text frame. See docs/protocol.md.
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from twisted_chat import __version__
from twisted_chat.core.errors import ChatError
from twisted_chat.core.events import (
    EpochChanged,
    Event,
    History,
    Joined,
    Message,
    NickChanged,
    Notice,
    Parted,
    Presence,
    Private,
    PrivateHistory,
    PrivateUpdate,
    ReadMarker,
    RoomList,
    SearchResults,
    TopicChanged,
    Typing,
    Update,
)
from twisted_chat.core.names import normalizeRoom
from twisted_chat.core.service import LOBBY, ChatService, Member

SERVER = "twisted-chat/" + __version__

_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode

#: a \uD800-\uDFFF escape: JSON lets one stand alone, but then it is no text
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def isText(value: object) -> bool:
    """
    Whether every string in the decoded JSON C{value} is real text: a lone
    surrogate (from an unpaired escape) cannot be encoded as UTF-8, so it
    would fail in every connection it was sent to.
    """
    try:
        _encode(value).encode("utf-8")
    except (UnicodeEncodeError, RecursionError):
        return False
    return True


def ms(t: float) -> int:
    return int(round(t * 1000))


def messageObject(m: Message) -> dict[str, Any]:
    obj = {
        "type": "message",
        "room": m.room,
        "id": m.id,
        "epoch": m.epoch,
        "from": m.sender,
        "text": m.text,
        "time": ms(m.time),
        "action": m.action,
        "mentions": list(m.mentions),
    }
    if m.replyTo:
        obj["reply_to"] = m.replyTo
    if m.edited:
        obj["edited"] = ms(m.edited)
    if m.deleted:
        obj["deleted"] = True
    if m.reactions:
        obj["reactions"] = m.reactions
    return obj


def privateObject(p: Private) -> dict[str, Any]:
    if isinstance(p, PrivateUpdate):
        return privateUpdateObject(p)
    obj: dict[str, Any] = {
        "type": "private",
        "id": p.id,
        "from": p.sender,
        "to": p.recipient,
        "text": p.text,
        "time": ms(p.time),
    }
    if p.replyTo:
        obj["reply_to"] = p.replyTo
    if p.edited:
        obj["edited"] = ms(p.edited)
    if p.deleted:
        obj["deleted"] = True
    if p.reactions:
        obj["reactions"] = p.reactions
    return obj


def _updateFields(obj: dict[str, Any], u: Update | PrivateUpdate) -> dict[str, Any]:
    if u.op == "edit":
        obj["text"] = u.text
        obj["by"] = u.sender
        if isinstance(u, Update):
            obj["mentions"] = list(u.mentions)
    elif u.op == "delete":
        obj["by"] = u.sender
    else:
        obj["emoji"] = u.emoji
        obj["nick"] = u.sender
        obj["on"] = u.on
    obj["time"] = ms(u.time)
    return obj


def updateObject(u: Update) -> dict[str, Any]:
    """
    An edit, deletion or reaction of a room message: C{id} is the message,
    C{seq} the update's own place in the room's sequence.
    """
    return _updateFields({"type": u.op, "room": u.room, "id": u.target, "seq": u.id, "epoch": u.epoch}, u)


def privateUpdateObject(u: PrivateUpdate) -> dict[str, Any]:
    """
    An edit, deletion or reaction of a private message (C{from} and C{to}
    are the message's sender and recipient).
    """
    author = u.author or u.sender
    other = u.recipient if author.lower() == u.sender.lower() else u.sender
    return _updateFields(
        {"type": u.op, "private": True, "id": u.target, "seq": u.id, "from": author, "to": other}, u
    )


def _typingObject(event: Typing) -> dict[str, Any]:
    return {"type": "typing", "room": event.room, "nick": event.nick, "state": event.state}


def _readObject(event: ReadMarker) -> dict[str, Any]:
    return {"type": "read", "room": event.room, "id": event.id}


def _searchObject(event: SearchResults) -> dict[str, Any]:
    return {
        "type": "search",
        "text": event.text,
        "results": [messageObject(m) if isinstance(m, Message) else privateObject(m) for m in event.results],
    }


def _joinObject(event: Joined) -> dict[str, Any]:
    return {"type": "join", "room": event.room, "nick": event.nick, "time": ms(event.time)}


def _partObject(event: Parted) -> dict[str, Any]:
    return {
        "type": "part",
        "room": event.room,
        "nick": event.nick,
        "reason": event.reason,
        "time": ms(event.time),
    }


def _nickObject(event: NickChanged) -> dict[str, Any]:
    return {
        "type": "nick",
        "old": event.old,
        "new": event.new,
        "rooms": list(event.rooms),
        "time": ms(event.time),
    }


def _presenceObject(event: Presence) -> dict[str, Any]:
    presence: dict[str, Any] = {"type": "presence", "room": event.room, "members": event.members}
    if event.total is not None:
        presence["total"] = event.total
    return presence


def _historyObject(event: History) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "type": "history",
        "room": event.room,
        "epoch": event.epoch,
        "messages": [messageObject(m) for m in event.messages if not isinstance(m, Update)],
    }
    if event.recovered is not None:
        obj["recovered"] = event.recovered
    if event.reason:
        # (epoch, gap: with recovered false; unavailable: the store could
        # not be read, after a since or not)
        obj["reason"] = event.reason
    if event.recovered:
        obj["updates"] = [updateObject(u) for u in event.messages if isinstance(u, Update)]
    if event.read is not None:
        obj["read"] = {"id": event.read[0], "unread": event.read[1], "mentions": event.read[2]}
    return obj


def _privateHistoryObject(event: PrivateHistory) -> dict[str, Any]:
    privates: dict[str, Any] = {
        "type": "private-history",
        "messages": [privateObject(p) for p in event.messages if not isinstance(p, PrivateUpdate)],
    }
    updates = [privateUpdateObject(p) for p in event.messages if isinstance(p, PrivateUpdate)]
    if updates:
        privates["updates"] = updates
    return privates


def _roomsObject(event: RoomList) -> dict[str, Any]:
    return {"type": "rooms", "rooms": [{"room": r, "members": n} for r, n in event.rooms]}


def _topicObject(event: TopicChanged) -> dict[str, Any]:
    return {"type": "topic", "room": event.room, "topic": event.topic, "by": event.by, "time": ms(event.time)}


def _epochObject(event: EpochChanged) -> dict[str, Any]:
    return {"type": "epoch", "room": event.room, "epoch": event.epoch, "previous": event.previous, "time": ms(event.time)}


def _noticeObject(event: Notice) -> dict[str, Any]:
    return {"type": "notice", "text": event.text}


#: event kind -> (its event class, the function that makes its JSON object)
_OBJECTS: dict[str, tuple[type[Event], Callable[[Any], dict[str, Any]]]] = {
    "message": (Message, messageObject),
    "update": (Update, updateObject),
    "private-update": (PrivateUpdate, privateUpdateObject),
    "typing": (Typing, _typingObject),
    "read": (ReadMarker, _readObject),
    "search": (SearchResults, _searchObject),
    "join": (Joined, _joinObject),
    "part": (Parted, _partObject),
    "private": (Private, privateObject),
    "nick": (NickChanged, _nickObject),
    "presence": (Presence, _presenceObject),
    "history": (History, _historyObject),
    "private-history": (PrivateHistory, _privateHistoryObject),
    "rooms": (RoomList, _roomsObject),
    "topic": (TopicChanged, _topicObject),
    "epoch": (EpochChanged, _epochObject),
    "notice": (Notice, _noticeObject),
}


def eventObject(event: Event) -> dict[str, Any] | None:
    """
    The JSON object for a service event.
    """
    known = _OBJECTS.get(event.kind)
    if known is None:
        return None
    cls, make = known
    assert isinstance(event, cls)
    return make(event)


def encodeEvent(event: Event) -> bytes | None:
    """
    The UTF-8 JSON of C{event}, computed once per event and cached on it.
    """
    data = event.cache.get("json")
    if data is None:
        obj = eventObject(event)
        if obj is None:
            return None
        data = event.cache["json"] = _encode(obj).encode("utf-8")
    return data


def _str(request: dict[str, Any], key: str, required: bool = True) -> str | None:
    value = request.get(key)
    if value is None:
        if required:
            raise ChatError("bad-request", "%r is required" % (key,))
        return None
    if not isinstance(value, str):
        raise ChatError("bad-request", "%r must be a string" % (key,))
    return value


def position(value: object) -> tuple[str, int] | None:
    """
    Parse a resume position C{{"epoch": str, "id": int}}.
    """
    if value is None:
        return None
    if (
        not isinstance(value, dict)
        or not isinstance(value.get("epoch"), str)
        or not isinstance(value.get("id"), int)
        or isinstance(value.get("id"), bool)
    ):
        raise ChatError("bad-request", 'a position is {"epoch": string, "id": integer}')
    return value["epoch"], value["id"]


class JsonSession:
    """
    The json-mode half of a WebSocket connection.

    Subclasses supply C{sendJson(bytes)}, C{sendEventJson(event, bytes)} (may
    use a prepared, cached frame), C{peer} and C{service}.
    """

    _log = Logger()
    member: Member | None = None
    service: ChatService
    peer: str = ""
    _helloPending = False

    def sendJson(self, data: bytes) -> None:
        raise NotImplementedError

    def sendEventJson(self, event: Event, data: bytes) -> None:
        self.sendJson(data)

    def sendObject(self, obj: dict[str, Any]) -> None:
        self.sendJson(_encode(obj).encode("utf-8"))

    def sendClosingNotice(self, reason: str, reconnectAfter: float | None) -> None:
        """
        Tell a json-mode user why the server ends the connection (and, on a
        shutdown, after how many milliseconds to reconnect).
        """
        notice: dict[str, Any] = {"type": "notice", "text": reason}
        if reconnectAfter is not None:
            notice["reconnect_after"] = int(reconnectAfter * 1000)
        self.sendObject(notice)

    def sendErrorObject(self, code: str, message: str, ref: object = None) -> None:
        obj: dict[str, Any] = {"type": "error", "code": code, "message": message}
        if ref is not None:
            obj["ref"] = ref
        self.sendObject(obj)

    def deliverJson(self, event: Event) -> None:
        data = encodeEvent(event)
        if data is not None:
            self.sendEventJson(event, data)

    def handleJson(self, payload: bytes) -> None:
        """
        Act on one json-mode frame; refusals become C{error} events.
        """
        if self.member is not None and self.member.gone:
            # Closed by the service (flooding, a failed delivery): frames
            # still arriving during the close handshake are ignored, as in
            # text mode, so a departed member never rejoins as a ghost.
            return
        try:
            request = json.loads(payload)
        except (ValueError, RecursionError):
            # RecursionError: nested deeper than the parser can go, e.g. "[" * 50000
            self.sendErrorObject("bad-json", "not valid JSON")
            return
        if not isinstance(request, dict):
            self.sendErrorObject("bad-json", "a request is a JSON object with a \"type\"")
            return
        if _SURROGATE_ESCAPE.search(payload) is not None and not isText(request):
            self.sendErrorObject("bad-json", "not valid JSON text: an unpaired \\ud800-\\udfff escape")
            return
        ref = request.get("ref")
        if ref is not None and not isinstance(ref, (str, int)) or isinstance(ref, bool):
            self.sendErrorObject("bad-request", "'ref' must be a string or an integer")
            return
        kind = request.get("type")
        handler: Callable[[dict[str, Any]], None] | None = (
            getattr(self, "req_" + kind, None) if isinstance(kind, str) and kind.isalpha() else None
        )
        if handler is None:
            self.sendErrorObject("unknown-type", "unknown request type %r" % (kind,), ref)
            return
        if self._helloPending:
            self.sendErrorObject("hello-required", "wait for the welcome", ref)
            return
        if self.member is None and kind != "hello":
            self.sendErrorObject("hello-required", "send a hello first", ref)
            return
        try:
            handler(request)
        except ChatError as e:
            self.sendErrorObject(e.code, e.message, ref)

    def _acked(self, d: Deferred[Any], ref: object, fields: Callable[[Any], dict[str, Any]]) -> None:
        def ok(result: object) -> None:
            if ref is not None:
                obj: dict[str, Any] = {"type": "ack", "ref": ref}
                obj.update(fields(result))
                self.sendObject(obj)

        def failed(f: Failure) -> None:
            if f.check(ChatError):
                self.sendErrorObject(f.value.code, f.value.message, ref)  # type: ignore[union-attr]
            else:
                self.service.logStoreFailure("storing a message failed", f)
                self.sendErrorObject("server-error", "not stored: please try again", ref)

        d.addCallbacks(ok, failed)

    # -- requests --

    def req_hello(self, request: dict[str, Any]) -> None:
        if self.member is not None:
            raise ChatError("bad-request", "hello was already sent")
        nick = _str(request, "nick", required=False) or None
        rooms = request.get("rooms")
        if rooms is None:
            rooms = [LOBBY]
        if not isinstance(rooms, list) or not all(isinstance(r, str) for r in rooms):
            raise ChatError("bad-request", "'rooms' must be a list of room names")
        names = list(dict.fromkeys(normalizeRoom(r) for r in rooms))
        maxRooms = self.service.settings.maxRoomsPerMember
        if len(names) > maxRooms:
            raise ChatError("too-many-rooms", "at most %d rooms" % (maxRooms,))
        since = request.get("since") or {}
        if not isinstance(since, dict):
            raise ChatError("bad-request", "'since' maps room names to positions")
        positions = {normalizeRoom(r): position(p) for r, p in since.items()}
        token = _str(request, "token", required=False)
        password = _str(request, "password", required=False)
        privateSince = request.get("private_since")
        if privateSince is not None and (not isinstance(privateSince, int) or isinstance(privateSince, bool)):
            raise ChatError("bad-request", "'private_since' must be a private message id")
        host = getattr(self, "_admitted", None) or ""
        if password is not None:
            if nick is None:
                raise ChatError("bad-request", "a password goes with a nick")
            self._helloPending = True
            d = self.service.connectWithPassword(self, nick, password, peer=self.peer, token=token, host=host)  # type: ignore[arg-type]

            def failed(f: Failure) -> None:
                self._helloPending = False
                if f.check(ChatError):
                    self.sendErrorObject(f.value.code, f.value.message, request.get("ref"))  # type: ignore[union-attr]
                else:
                    self._log.failure("login failed", f)
                    self.sendErrorObject("server-error", "login failed: please try again", request.get("ref"))

            def connected(member: Member) -> None:
                self._helloPending = False
                if self.member is not None or not self.isOpen():
                    member.quit("disconnected")
                    return
                self._welcome(member, names, positions, privateSince)

            d.addCallbacks(connected, failed)
            return
        member = self.service.connect(self, nick=nick, peer=self.peer, token=token, host=host)  # type: ignore[arg-type]
        self._welcome(member, names, positions, privateSince)

    def isOpen(self) -> bool:
        """
        Whether the connection can still take events.
        """
        return True

    def _welcome(
        self,
        member: Member,
        names: list[str],
        positions: dict[str, tuple[str, int] | None],
        privateSince: int | None,
    ) -> None:
        self.member = member
        service = self.service
        # On a server for registered users only, a guest joins nothing (the
        # welcome says so) until it logs in.
        guest = service.requireAuth and member.authenticated is None
        if guest:
            names = []
        welcome: dict[str, Any] = {
            "type": "welcome",
            "nick": member.nick,
            "server": SERVER,
            "rooms": names,
            "owner": member.owner,
        }
        if member.authenticated is not None:
            welcome["authenticated"] = True
        if member.token is not None:
            welcome["token"] = member.token
        self.sendObject(welcome)
        # The hello is one request: its joins (at most --max-rooms) are not
        # charged to flood control one by one.
        for name in names:
            member.join(name, positions.get(name), charged=False)
        if names:
            member.join(names[0], None, charged=False)  # the first room listed is the current one
        if member.owner:
            member.privateHistory(privateSince)
        if guest:
            raise ChatError("auth-required", "log in first: send a login request, then join")

    def req_say(self, request: dict[str, Any]) -> None:
        assert self.member is not None
        text = _str(request, "text")
        room = _str(request, "room", required=False)
        action = request.get("action", False) is True
        ref = request.get("ref")
        d = self.member.say(text, room, action, ref, request.get("reply_to"))  # type: ignore[arg-type]
        self._acked(d, ref, lambda m: {"id": m.id, "room": m.room, "epoch": m.epoch})

    def req_msg(self, request: dict[str, Any]) -> None:
        assert self.member is not None
        d = self.member.private(
            _str(request, "to"), _str(request, "text"), request.get("ref"), request.get("reply_to")  # type: ignore[arg-type]
        )
        self._acked(d, request.get("ref"), lambda p: {"id": p.id, "to": p.recipient})

    def req_join(self, request: dict[str, Any]) -> None:
        assert self.member is not None
        name, new = self.member.join(
            _str(request, "room"), since=position(request.get("since"))  # type: ignore[arg-type]
        )
        if not new:
            self.member.who(name)

    def req_part(self, request: dict[str, Any]) -> None:
        assert self.member is not None
        self.member.part(_str(request, "room", required=False))

    def req_nick(self, request: dict[str, Any]) -> None:
        assert self.member is not None
        self.member.setNick(_str(request, "nick"))  # type: ignore[arg-type]

    def req_who(self, request: dict[str, Any]) -> None:
        assert self.member is not None
        self.member.who(_str(request, "room", required=False))

    def req_rooms(self, request: dict[str, Any]) -> None:
        assert self.member is not None
        self.member.listRooms()

    def req_history(self, request: dict[str, Any]) -> None:
        assert self.member is not None
        before = request.get("before")
        limit = request.get("limit", 50)
        if before is not None and (not isinstance(before, int) or isinstance(before, bool)):
            raise ChatError("bad-request", "'before' must be a message id")
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise ChatError("bad-request", "'limit' must be a positive integer")
        self.member.history(_str(request, "room", required=False), limit, before)

    def req_login(self, request: dict[str, Any]) -> None:
        assert self.member is not None
        d = self.member.login(_str(request, "nick"), _str(request, "password"))  # type: ignore[arg-type]
        self._acked(d, request.get("ref"), lambda nick: {"nick": nick})

    def req_topic(self, request: dict[str, Any]) -> None:
        assert self.member is not None
        self.member.setTopic(_str(request, "topic"), _str(request, "room", required=False))  # type: ignore[arg-type]

    def req_kick(self, request: dict[str, Any]) -> None:
        assert self.member is not None
        self.member.kick(
            _str(request, "nick"), _str(request, "reason", required=False) or "", _str(request, "room", required=False)  # type: ignore[arg-type]
        )

    def req_ban(self, request: dict[str, Any]) -> None:
        assert self.member is not None
        self.member.ban(
            _str(request, "target"), _str(request, "reason", required=False) or "", _str(request, "room", required=False)  # type: ignore[arg-type]
        )

    def req_unban(self, request: dict[str, Any]) -> None:
        assert self.member is not None
        self.member.unban(_str(request, "target"), _str(request, "room", required=False))  # type: ignore[arg-type]

    def req_op(self, request: dict[str, Any]) -> None:
        assert self.member is not None
        self.member.giveOp(_str(request, "nick"), _str(request, "room", required=False))  # type: ignore[arg-type]

    def req_notice(self, request: dict[str, Any]) -> None:
        assert self.member is not None
        self.member.serverNotice(_str(request, "text"))  # type: ignore[arg-type]

    def req_status(self, request: dict[str, Any]) -> None:
        assert self.member is not None
        self.member.status()

    def _update(self, request: dict[str, Any], op: str, text: object = "", emoji: object = "", on: bool = True) -> None:
        assert self.member is not None
        ref = request.get("ref")
        if request.get("private") is True:
            pd = self.member.updatePrivate(request.get("id"), op, text, emoji, on, ref)
            self._acked(pd, ref, lambda u: {"id": u.target, "seq": u.id, "private": True})
            return
        room = _str(request, "room", required=False)
        epoch = request.get("epoch")
        if op == "edit":
            d = self.member.edit(request.get("id"), text, room, ref, epoch)
        elif op == "delete":
            d = self.member.delete(request.get("id"), room, ref, epoch)
        else:
            d = self.member.react(request.get("id"), emoji, on, room, ref, epoch)
        self._acked(d, ref, lambda u: {"id": u.target, "seq": u.id, "room": u.room, "epoch": u.epoch})

    def req_edit(self, request: dict[str, Any]) -> None:
        self._update(request, "edit", text=_str(request, "text"))

    def req_delete(self, request: dict[str, Any]) -> None:
        self._update(request, "delete")

    def req_react(self, request: dict[str, Any]) -> None:
        on = request.get("on", True)
        if not isinstance(on, bool):
            raise ChatError("bad-request", "'on' must be true or false")
        self._update(request, "react", emoji=request.get("emoji"), on=on)

    def req_typing(self, request: dict[str, Any]) -> None:
        assert self.member is not None
        self.member.typing(request.get("state"), _str(request, "room", required=False))

    def req_read(self, request: dict[str, Any]) -> None:
        assert self.member is not None
        self._acked(
            self.member.markRead(request.get("id"), _str(request, "room", required=False)),
            request.get("ref"),
            lambda _: {},
        )

    def req_search(self, request: dict[str, Any]) -> None:
        assert self.member is not None
        d = self.member.search(
            request.get("text"), _str(request, "room", required=False), request.get("before"), request.get("limit")
        )
        self._acked(d, request.get("ref"), lambda _: {})
