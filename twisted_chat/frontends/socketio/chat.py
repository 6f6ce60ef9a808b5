# -*- test-case-name: tests.frontends.socketio.test_socketio -*-
"""
The chat over Socket.IO: the handler of the main namespace C{/}
(L{SocketIoChatClient}, an L{IChatClient}) and its requests
(L{ChatRequests}); the only part of the Socket.IO front-end that knows the
chat service. L{makeSocketIo} builds the whole front-end.

A client is in text mode (C{message} events carry the line chat's lines,
as the seed's page expects; L{TextSession} parses and renders them) or in
json mode (one event per json-mode type, with json mode's objects; the
CONNECT's C{auth} is json mode's C{hello}, handled by L{JsonSession}). In
both modes the named requests (C{say}, C{join}, …) work, answered through
their acknowledgements. See docs/protocol.md.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Callable, Optional, cast

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_chat.core.errors import ChatError
from twisted_chat.core.events import Event
from twisted_chat.core.interfaces import IChatClient
from twisted_chat.core.limits import Admission
from twisted_chat.core.service import ChatService, Member
from twisted_chat.frontends.jsonmode import JsonSession, position
from twisted_chat.frontends.socketio.connection import Ack, ConnectRefused, EventName, NamespaceSocket, SocketIoServer
from twisted_chat.frontends.socketio.engineio.http import EngineResource
from twisted_chat.frontends.socketio.engineio.packets import BAD_REQUEST, FORBIDDEN, EngineError
from twisted_chat.frontends.socketio.engineio.server import EngineServer
from twisted_chat.frontends.socketio.packets import EVENT, JSON, encodeText
from twisted_chat.frontends.textmode import TextSession, closingText
from twisted_chat.frontends.throttle import ThrottledInput

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorTime

#: what waits under flood control: one event, as the namespace got it
_Input = tuple[EventName, list[JSON], Optional[Ack]]

#: a request's main field, for clients that send a bare string
_MAIN_FIELD = {
    "say": "text",
    "join": "room",
    "part": "room",
    "nick": "nick",
    "who": "room",
    "history": "room",
    "search": "text",
    "typing": "state",
}


def _required(request: dict[str, JSON], key: str) -> str:
    value = _optional(request, key)
    if value is None:
        raise ChatError("bad-request", "%r is required" % (key,))
    return value


def _optional(request: dict[str, JSON], key: str) -> str | None:
    value = request.get(key)
    if value is not None and not isinstance(value, str):
        raise ChatError("bad-request", "%r must be a string" % (key,))
    return value


class ChatRequests:
    """
    The chat's Socket.IO events, in both modes: each is a request of the
    client's member (C{req_<event>}). With an acknowledgement the client
    gets C{{"ok": true, …}} or C{{"ok": false, "code", "message"}};
    without one, a refusal is an C{error} event (json mode) or a C{!!!}
    line (text mode).
    """

    def __init__(self, client: SocketIoChatClient) -> None:
        self.client = client

    def handle(self, name: EventName, args: list[JSON], ack: Ack | None) -> None:
        """
        Carry out the event C{name}.
        """
        member = self.client.member
        if member is None or member.gone:
            return
        ref = None
        try:
            handler: Callable[[Member, dict[str, JSON], Ack | None], None] | None = (
                getattr(self, "req_" + name, None) if isinstance(name, str) else None
            )
            if handler is None or not isinstance(name, str):
                raise ChatError("unknown-type", "unknown request %r" % (name,))
            request = self._request(name, args)
            ref = request.get("ref")
            if ref is not None and (not isinstance(ref, (str, int)) or isinstance(ref, bool)):
                ref = None
                raise ChatError("bad-request", "'ref' must be a string or an integer")
            handler(member, request, ack)
        except ChatError as e:
            self._refuse(ack, e.code, e.message, ref)

    @staticmethod
    def _request(name: str, args: list[JSON]) -> dict[str, JSON]:
        """
        The request object of an event: its first argument, or for the
        shorthands a bare string (C{emit("join", "#dev")}, C{emit("msg",
        "bob", "hi")}).
        """
        if not args:
            return {}
        first = args[0]
        if isinstance(first, dict):
            return first
        if name == "msg" and len(args) >= 2:
            return {"to": first, "text": args[1]}
        if name == "message":
            return {"text": first}
        field = _MAIN_FIELD.get(name)
        if field is not None and isinstance(first, str):
            return {field: first}
        raise ChatError("bad-request", "send an object with the request's fields")

    # -- answers --

    def _ok(self, ack: Ack | None, **fields: JSON) -> None:
        if ack is not None:
            ack({"ok": True, **fields})

    def _refuse(self, ack: Ack | None, code: str, message: str, ref: JSON = None) -> None:
        client = self.client
        if ack is not None:
            ack({"ok": False, "code": code, "message": message})
        elif client.json:
            client.sendErrorObject(code, message, ref)
        else:
            client.sendError(message)

    def _settle(
        self, d: Deferred[Any], ack: Ack | None, ref: JSON, fields: Callable[[Any], dict[str, JSON]]
    ) -> None:
        """
        Answer a say or msg once it is stored (or refused).
        """
        client = self.client

        def stored(result: object) -> None:
            values = fields(result)
            if ack is not None:
                ack({"ok": True, **values})
            elif ref is not None and client.json:
                client.sendObject({"type": "ack", "ref": ref, **values})

        def failed(f: Failure) -> None:
            if isinstance(f.value, ChatError):
                self._refuse(ack, f.value.code, f.value.message, ref)
            else:
                client.service.logStoreFailure("storing a message failed", f)
                self._refuse(ack, "server-error", "not stored: please try again", ref)

        d.addCallbacks(stored, failed)

    # -- requests --

    def req_message(self, member: Member, request: dict[str, JSON], ack: Ack | None) -> None:
        text = request.get("text")
        if not self.client.json:
            # A line of the line chat, commands included.
            if not isinstance(text, str):
                raise ChatError("bad-request", "send a line of text")
            self.client.handleText(text)
            self._ok(ack)
            return
        self.req_say(member, {"text": text}, ack)

    def req_say(self, member: Member, request: dict[str, JSON], ack: Ack | None) -> None:
        ref = request.get("ref")
        text, room = _required(request, "text"), _optional(request, "room")
        d = member.say(text, room, request.get("action", False) is True, ref, request.get("reply_to"))
        self._settle(d, ack, ref, lambda m: {"id": m.id, "room": m.room, "epoch": m.epoch})

    def req_msg(self, member: Member, request: dict[str, JSON], ack: Ack | None) -> None:
        ref = request.get("ref")
        d = member.private(_required(request, "to"), _required(request, "text"), ref, request.get("reply_to"))
        self._settle(d, ack, ref, lambda p: {"id": p.id, "to": p.recipient})

    def req_join(self, member: Member, request: dict[str, JSON], ack: Ack | None) -> None:
        name, new = member.join(_required(request, "room"), since=position(request.get("since")))
        if not new:
            member.who(name)
        self._ok(ack, room=name)

    def req_part(self, member: Member, request: dict[str, JSON], ack: Ack | None) -> None:
        name = member.part(_optional(request, "room"))
        self._ok(ack, room=name)

    def req_nick(self, member: Member, request: dict[str, JSON], ack: Ack | None) -> None:
        nick = member.setNick(_required(request, "nick"))
        self._ok(ack, nick=nick)

    def req_who(self, member: Member, request: dict[str, JSON], ack: Ack | None) -> None:
        member.who(_optional(request, "room"))
        self._ok(ack)

    def req_rooms(self, member: Member, request: dict[str, JSON], ack: Ack | None) -> None:
        member.listRooms()
        self._ok(ack)

    def req_history(self, member: Member, request: dict[str, JSON], ack: Ack | None) -> None:
        before = request.get("before")
        limit = request.get("limit", 50)
        if before is not None and (not isinstance(before, int) or isinstance(before, bool)):
            raise ChatError("bad-request", "'before' must be a message id")
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise ChatError("bad-request", "'limit' must be a positive integer")
        member.history(_optional(request, "room"), limit, before)
        self._ok(ack)

    # (edits, deletions, reactions, typing, read markers, search: json
    # mode's requests, with the same names and fields)

    def _update(
        self, member: Member, request: dict[str, JSON], ack: Ack | None, op: str, text: JSON = "", emoji: JSON = ""
    ) -> None:
        ref = request.get("ref")
        on = request.get("on", True)
        if not isinstance(on, bool):
            raise ChatError("bad-request", "'on' must be true or false")
        if request.get("private") is True:
            pd = member.updatePrivate(request.get("id"), op, text, emoji, on, ref)
            self._settle(pd, ack, ref, lambda u: {"id": u.target, "seq": u.id, "private": True})
            return
        room = _optional(request, "room")
        epoch = request.get("epoch")
        if op == "edit":
            d = member.edit(request.get("id"), text, room, ref, epoch)
        elif op == "delete":
            d = member.delete(request.get("id"), room, ref, epoch)
        else:
            d = member.react(request.get("id"), emoji, on, room, ref, epoch)
        self._settle(d, ack, ref, lambda u: {"id": u.target, "seq": u.id, "room": u.room, "epoch": u.epoch})

    def req_edit(self, member: Member, request: dict[str, JSON], ack: Ack | None) -> None:
        self._update(member, request, ack, "edit", text=_required(request, "text"))

    def req_delete(self, member: Member, request: dict[str, JSON], ack: Ack | None) -> None:
        self._update(member, request, ack, "delete")

    def req_react(self, member: Member, request: dict[str, JSON], ack: Ack | None) -> None:
        self._update(member, request, ack, "react", emoji=request.get("emoji"))

    def req_typing(self, member: Member, request: dict[str, JSON], ack: Ack | None) -> None:
        member.typing(request.get("state"), _optional(request, "room"))
        self._ok(ack)

    def req_read(self, member: Member, request: dict[str, JSON], ack: Ack | None) -> None:
        self._settle(member.markRead(request.get("id"), _optional(request, "room")), ack, None, lambda _: {})

    def req_search(self, member: Member, request: dict[str, JSON], ack: Ack | None) -> None:
        d = member.search(request.get("text"), _optional(request, "room"), request.get("before"), request.get("limit"))
        self._settle(d, ack, None, lambda _: {})


@implementer(IChatClient)
class SocketIoChatClient(TextSession, JsonSession, ThrottledInput):
    """
    One Socket.IO client of the chat, in the main namespace.

    The CONNECT's C{auth} picks the mode: text (the default) renders every
    event as a line of the line chat in a C{message} event; json
    (C{auth.mode == "json"}) sends every json-mode event object as an event
    named by its type, and C{auth} is json mode's C{hello}. Its events are
    requests (L{ChatRequests}).

    Every event waits its turn under flood control (L{ThrottledInput}): a
    session that has to wait reads nothing more meanwhile (its WebSocket is
    not read, its POST is not answered; see
    L{EngineSocket.pauseInput
    <twisted_chat.frontends.socketio.engineio.session.EngineSocket.pauseInput>})
    and the events it had sent already wait in order.
    """

    _log = Logger()
    kind = "sio-text"
    json = False
    #: the client's address, for json mode's hello (bans, per-address limits)
    _admitted: str | None = None
    #: fires when a json-mode hello is through (or fails with ConnectRefused)
    _connecting: Deferred[None] | None = None
    #: the hello is being handled, and (once) its welcome was sent
    _inHello = False
    _welcomed = False

    def __init__(self, service: ChatService, socket: NamespaceSocket) -> None:
        self.service = service
        self.socket = socket
        engine = socket.connection.engine
        self.peer = engine.peer
        self.host = engine.host
        self.member = None
        self.requests = ChatRequests(self)

    # -- namespace handler --

    def onConnect(self, auth: dict[str, JSON]) -> Deferred[None] | None:
        mode = auth.get("mode", "text")
        if mode not in ("text", "json"):
            raise ConnectRefused('mode is "text" (the default) or "json"', {"code": "bad-request"})
        # (Admission was checked when the Engine.IO session was opened.)
        self._admitted = self.host
        if mode == "json":
            return self._helloJson(auth)
        self._helloText(auth)
        return None

    def _helloText(self, auth: dict[str, JSON]) -> None:
        """
        Start as every text-mode connection does; then C{auth.nick} takes
        that nick, or with C{auth.password} logs in as C{/login} does.
        """
        self.startTextSession(self.service, self.peer, self.host)
        member = self.member
        if member is None:
            return
        nick = auth.get("nick")
        password = auth.get("password")
        if nick is not None and not isinstance(nick, str) or password is not None and not isinstance(password, str):
            self.sendError("nick and password are strings")
        elif nick and password:
            self.handleText("/login %s %s" % (nick, password))
        elif nick:
            try:
                member.setNick(nick)
            except ChatError as e:
                self.sendError(e.message)

    def _helloJson(self, auth: dict[str, JSON]) -> Deferred[None]:
        """
        json mode's hello, with the CONNECT's auth as the request; the
        CONNECT is answered once the welcome was sent (a login with a
        password takes a while), or refused with the hello's error.
        """
        self.json = True
        self.kind = "sio-json"
        d = self._connecting = Deferred()
        # (a hello has no ref: one in auth is not the hello's to answer)
        hello = {key: value for key, value in auth.items() if key != "ref"}
        hello["type"] = "hello"
        self._inHello = True
        try:
            self.handleJson(json.dumps(hello, ensure_ascii=False).encode("utf-8"))
        finally:
            self._inHello = False
        if self._welcomed:
            self._connected()
        return d

    def _connected(self) -> None:
        d, self._connecting = self._connecting, None
        if d is not None:
            d.callback(None)

    def _refuseConnect(self, code: str, message: str) -> None:
        d, self._connecting = self._connecting, None
        member, self.member = self.member, None
        if member is not None:
            member.quit("disconnected")
        if d is not None:
            d.errback(ConnectRefused(message, {"code": code}))

    def isOpen(self) -> bool:
        return not self.socket.closed

    def onDisconnect(self, reason: str) -> None:
        self._connecting = None
        self.dropInput()
        member = self.member
        if member is not None:
            member.quit("too slow" if reason == "too slow" else "disconnected")

    def onEvent(self, name: EventName, args: list[JSON], ack: Ack | None) -> None:
        self.takeInput((name, args, ack))

    # -- flood control (see frontends.throttle.ThrottledInput) --

    def handleInput(self, item: object) -> None:
        name, args, ack = cast(_Input, item)
        self.requests.handle(name, args, ack)

    def pauseInput(self) -> None:
        self.socket.connection.engine.pauseInput()

    def resumeInput(self) -> None:
        self.socket.connection.engine.resumeInput()

    def inputOpen(self) -> bool:
        return not self.socket.closed

    def inputFlooded(self, waiting: int) -> None:
        if self.json:
            self.sendErrorObject(
                "flood", "disconnected for flooding: more than %d requests waiting" % (self.service.settings.floodKick,)
            )

    # -- IChatClient --

    def deliver(self, event: object) -> None:
        if self.socket.closed:
            return
        if not isinstance(event, Event):
            raise TypeError("not a chat event: %r" % (event,))
        if self.json:
            self.deliverJson(event)
        else:
            self.deliverText(event)

    def close(self, reason: str, reconnectAfter: float | None = None) -> None:
        """
        The service ends this connection (shutdown, flooding): say why, then
        close the session; the client library reconnects by itself.
        """
        self.dropInput()
        if not self.socket.closed:
            if self.json:
                self.sendClosingNotice(reason, reconnectAfter)
            else:
                self.sendNotice(closingText(reason, reconnectAfter))
        member = self.member
        if member is not None:
            member.quit("disconnected")
        self.socket.closeConnection(reason)

    def endSession(self, reason: str) -> None:
        # /quit: a namespace disconnect, so the client does not reconnect.
        self.dropInput()
        self.socket.disconnect()

    # -- output (text mode: TextSession's; json mode: JsonSession's) --

    def sendText(self, text: str) -> None:
        self.socket.emit("message", text)

    def sendRendered(self, event: Event, text: str) -> None:
        packet = event.cache.get("sio-text")
        if packet is None:
            packet = event.cache["sio-text"] = encodeText(EVENT, "/", ["message", text])
        self.socket.sendEncoded(packet)

    def sendObject(self, obj: dict[str, Any]) -> None:
        self.socket.emit(obj["type"], obj)
        if obj["type"] == "welcome" and self._connecting is not None:
            # The hello is through: answer the CONNECT (after the welcome,
            # which waits for it). A hello handled at once may still fail
            # after its welcome: then the CONNECT waits for it to return.
            if self._inHello:
                self._welcomed = True
            else:
                self._connected()

    def sendErrorObject(self, code: str, message: str, ref: object = None) -> None:
        if self._connecting is not None:
            # The hello failed (a wrong password): refuse the CONNECT.
            self._refuseConnect(code, message)
            return
        JsonSession.sendErrorObject(self, code, message, ref)

    def sendJson(self, data: bytes) -> None:
        self.sendObject(json.loads(data))

    def sendEventJson(self, event: Event, data: bytes) -> None:
        packet = event.cache.get("sio-json")
        if packet is None:
            # (named by the object's type: an update is an "edit", a
            # "delete" or a "react")
            name = getattr(event, "op", None) or event.kind
            packet = event.cache["sio-json"] = '2["%s",%s]' % (name, data.decode("utf-8"))
        self.socket.sendEncoded(packet)


class ChatAdmission:
    """
    The chat's connection limits and bans (the service's L{Admission}) as
    Engine.IO admits sessions: a refusal is an HTTP error, 403 for a banned
    address, else 503, with the chat's reason as its message.
    """

    _log = Logger()

    def __init__(self, admission: Admission) -> None:
        self.admission = admission

    def admit(self, host: str) -> None:
        try:
            self.admission.admit(host)
        except ChatError as e:
            raise self._refusal(host, e)

    def admitLater(self, host: str) -> Deferred[None] | None:
        """
        L{admit}, for the whole machine in a worker (see
        L{Admission.admitLater}): None once admitted, or a Deferred that
        fails with the L{EngineError} of a refusal.
        """
        try:
            waiting = self.admission.admitLater(host)
        except ChatError as e:
            raise self._refusal(host, e)
        if waiting is None:
            return None

        def refused(f: Failure) -> None:
            error = f.trap(ChatError) and f.value
            assert isinstance(error, ChatError)
            raise self._refusal(host, error)

        return waiting.addErrback(refused)

    def _refusal(self, host: str, e: ChatError) -> EngineError:
        self._log.info("refused an engine.io session from {host}: {why}", host=host, why=e.code)
        if e.code == "banned":
            return EngineError(FORBIDDEN, 403, e.message)
        return EngineError(BAD_REQUEST, 503, e.message)

    def release(self, host: str) -> None:
        self.admission.release(host)


def makeSocketIo(
    service: ChatService,
    clock: IReactorTime | None = None,
    allowedOrigins: list[str] | None = None,
    pingInterval: float = 25.0,
    pingTimeout: float = 20.0,
    maxPayload: int = 100000,
    maxSessions: int = 10000,
    connectTimeout: float = 45.0,
) -> EngineResource:
    """
    The chat's C{/socket.io/} resource: Engine.IO sessions whose main
    namespace is the chat. A session counts as a connection of its address
    (the service's admission: --max-connections, --max-per-ip, bans) from its
    handshake until it is closed. The reloadable limits (C{maxOutgoing}…)
    are the service's C{settings}.
    """
    sio = SocketIoServer({"/": lambda socket: SocketIoChatClient(service, socket)}, connectTimeout=connectTimeout)
    engine = EngineServer(
        sio,
        clock=clock,
        pingInterval=pingInterval,
        pingTimeout=pingTimeout,
        maxPayload=maxPayload,
        maxSessions=maxSessions,
        allowedOrigins=allowedOrigins,
        admission=ChatAdmission(service.admission),
        settings=service.settings,
    )
    return EngineResource(engine)
