# -*- test-case-name: tests.test_socketio -*-
"""
The chat over Socket.IO: the handler of the main namespace C{/}
(L{SocketIoChatClient}, an L{IChatClient}), which reuses the line chat's
commands and rendering (text mode: C{message} events carry lines, as the
seed's page expects) and json mode's requests and event objects (json
mode: one event per json-mode type). L{makeSocketIo} builds the whole
front-end. See docs/protocol.md.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Callable

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_chat.core.errors import ChatError
from twisted_chat.core.events import Event
from twisted_chat.core.interfaces import IChatClient
from twisted_chat.core.limits import Admission
from twisted_chat.core.service import ChatService, Member
from twisted_chat.frontends.jsonmode import JsonSession, _position, _str
from twisted_chat.frontends.socketio.connection import ConnectRefused, NamespaceSocket, SocketIoServer
from twisted_chat.frontends.socketio.engineio import BAD_REQUEST, FORBIDDEN, EngineError, EngineResource, EngineServer
from twisted_chat.frontends.socketio.packets import EVENT, encodeText
from twisted_chat.frontends.textmode import TextSession, closingText
from twisted_chat.frontends.throttle import ThrottledInput

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorTime

#: a request's main field, for clients that send a bare string
_MAIN_FIELD = {
    "say": "text",
    "join": "room",
    "part": "room",
    "nick": "nick",
    "who": "room",
    "history": "room",
}


@implementer(IChatClient)
class SocketIoChatClient(TextSession, JsonSession, ThrottledInput):
    """
    One Socket.IO client of the chat, in the main namespace.

    The CONNECT's C{auth} picks the mode: text (the default) renders every
    event as a line of the line chat in a C{message} event; json
    (C{auth.mode == "json"}) sends every json-mode event object as an event
    named by its type, and C{auth} is json mode's C{hello}. In both modes
    the named requests (C{say}, C{join}, …) work, with acknowledgements.

    Every event waits its turn under flood control (L{ThrottledInput}): a
    session that has to wait reads nothing more meanwhile (its WebSocket is
    not read, its POST is not answered; see L{EngineSocket.pauseInput}) and
    the events it had sent already wait in order.
    """

    _log = Logger()
    kind = "sio-text"
    json = False
    #: the client's address, for json mode's hello (bans, per-address limits)
    _admitted: str | None = None
    #: fires when a json-mode hello is through (or fails with ConnectRefused)
    _connecting: Deferred[None] | None = None

    def __init__(self, service: ChatService, socket: NamespaceSocket) -> None:
        self.service = service
        self.socket = socket
        engine = socket.connection.engine
        self.peer = engine.peer
        self.host = engine.host
        self.member = None

    # -- namespace handler --

    def onConnect(self, auth: dict[str, Any]) -> Deferred[None] | None:
        mode = auth.get("mode", "text")
        if mode not in ("text", "json"):
            raise ConnectRefused('mode is "text" (the default) or "json"', {"code": "bad-request"})
        # (Admission was checked when the Engine.IO session was opened.)
        self._admitted = self.host
        if mode == "json":
            return self._helloJson(auth)
        self.startTextSession(self.service, self.peer, self.host)
        member = self.member
        assert member is not None
        nick = auth.get("nick")
        password = auth.get("password")
        try:
            if nick is not None and not isinstance(nick, str) or password is not None and not isinstance(password, str):
                raise ChatError("bad-request", "nick and password are strings")
            if nick and password:
                self.cmd_login(member, nick + " " + password)
            elif nick:
                member.setNick(nick)
        except ChatError as e:
            self.sendError(e.message)
        return None

    def _helloJson(self, auth: dict[str, Any]) -> Deferred[None]:
        """
        json mode's hello, with the CONNECT's auth as the request; the
        CONNECT is answered once the welcome was sent (a login with a
        password takes a while).
        """
        self.json = True
        self.kind = "sio-json"
        d = self._connecting = Deferred()
        try:
            self.json_hello(auth)
        except ChatError as e:
            self._refuseConnect(e.code, e.message)
        return d

    def _welcome(self, member: Member, *args: Any) -> None:
        JsonSession._welcome(self, member, *args)  # type: ignore[arg-type]
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

    def onEvent(self, name: str, args: list[Any], ack: Callable[..., None] | None) -> None:
        self.takeInput((name, args, ack))

    # -- flood control (see _limits.ThrottledInput) --

    def handleInput(self, item: Any) -> None:
        name, args, ack = item
        member = self.member
        if member is None or member.gone:
            return
        method = _REQUESTS.get(name) if isinstance(name, str) else None
        ref = None
        try:
            if method is None:
                raise ChatError("unknown-type", "unknown request %r" % (name,))
            request = self._request(name, args)
            ref = request.get("ref")
            if ref is not None and (not isinstance(ref, (str, int)) or isinstance(ref, bool)):
                ref = None
                raise ChatError("bad-request", "'ref' must be a string or an integer")
            method(self, request, ack)
        except ChatError as e:
            self._refuse(ack, e.code, e.message, ref)

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

    # -- requests --

    @staticmethod
    def _request(name: str, args: list[Any]) -> dict[str, Any]:
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

    def _ok(self, ack: Callable[..., None] | None, **fields: Any) -> None:
        if ack is not None:
            ack({"ok": True, **fields})

    def _refuse(self, ack: Callable[..., None] | None, code: str, message: str, ref: object = None) -> None:
        if ack is not None:
            ack({"ok": False, "code": code, "message": message})
        elif self.json:
            self.sendErrorObject(code, message, ref)
        else:
            self.sendError(message)

    def _settle(
        self, d: Deferred[Any], ack: Callable[..., None] | None, ref: object, fields: Callable[[Any], dict[str, Any]]
    ) -> None:
        """
        Answer a say or msg once it is stored (or refused).
        """

        def stored(result: object) -> None:
            values = fields(result)
            if ack is not None:
                ack({"ok": True, **values})
            elif ref is not None and self.json:
                self.sendObject({"type": "ack", "ref": ref, **values})

        def failed(f: Failure) -> None:
            if f.check(ChatError):
                self._refuse(ack, f.value.code, f.value.message, ref)  # type: ignore[union-attr]
            else:
                self.service.logStoreFailure("storing a message failed", f)
                self._refuse(ack, "server-error", "not stored: please try again", ref)

        d.addCallbacks(stored, failed)

    def req_message(self, request: dict[str, Any], ack: Callable[..., None] | None) -> None:
        text = request.get("text")
        if not self.json:
            # A line of the line chat, commands included.
            if not isinstance(text, str):
                raise ChatError("bad-request", "send a line of text")
            self.handleText(text)
            self._ok(ack)
            return
        self.req_say({"text": text}, ack)

    def req_say(self, request: dict[str, Any], ack: Callable[..., None] | None) -> None:
        assert self.member is not None
        ref = request.get("ref")
        d = self.member.say(
            _str(request, "text"),  # type: ignore[arg-type]
            _str(request, "room", required=False),
            request.get("action", False) is True,
            ref,
        )
        self._settle(d, ack, ref, lambda m: {"id": m.id, "room": m.room, "epoch": m.epoch})

    def req_msg(self, request: dict[str, Any], ack: Callable[..., None] | None) -> None:
        assert self.member is not None
        ref = request.get("ref")
        d = self.member.private(_str(request, "to"), _str(request, "text"), ref)  # type: ignore[arg-type]
        self._settle(d, ack, ref, lambda p: {"id": p.id, "to": p.recipient})

    def req_join(self, request: dict[str, Any], ack: Callable[..., None] | None) -> None:
        assert self.member is not None
        name, new = self.member.join(
            _str(request, "room"), since=_position(request.get("since"))  # type: ignore[arg-type]
        )
        if not new:
            self.member.who(name)
        self._ok(ack, room=name)

    def req_part(self, request: dict[str, Any], ack: Callable[..., None] | None) -> None:
        assert self.member is not None
        name = self.member.part(_str(request, "room", required=False))
        self._ok(ack, room=name)

    def req_nick(self, request: dict[str, Any], ack: Callable[..., None] | None) -> None:
        assert self.member is not None
        nick = self.member.setNick(_str(request, "nick"))  # type: ignore[arg-type]
        self._ok(ack, nick=nick)

    def req_who(self, request: dict[str, Any], ack: Callable[..., None] | None) -> None:
        self.json_who(request)
        self._ok(ack)

    def req_rooms(self, request: dict[str, Any], ack: Callable[..., None] | None) -> None:
        self.json_rooms(request)
        self._ok(ack)

    def req_history(self, request: dict[str, Any], ack: Callable[..., None] | None) -> None:
        self.json_history(request)
        self._ok(ack)

    # -- IChatClient --

    def deliver(self, event: Event) -> None:
        if self.socket.closed:
            return
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

    # -- output --

    def sendText(self, text: str) -> None:
        self.socket.emit("message", text)

    def sendRendered(self, event: Event, text: str) -> None:
        packet = event.cache.get("sio-text")
        if packet is None:
            packet = event.cache["sio-text"] = encodeText(EVENT, "/", ["message", text])
        self.socket.sendEncoded(packet)

    def sendObject(self, obj: dict[str, Any]) -> None:
        self.socket.emit(obj["type"], obj)

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
            packet = event.cache["sio-json"] = '2["%s",%s]' % (event.kind, data.decode("utf-8"))
        self.socket.sendEncoded(packet)


_REQUESTS: dict[str, Callable[[SocketIoChatClient, dict[str, Any], Callable[..., None] | None], None]] = {
    "message": SocketIoChatClient.req_message,
    "say": SocketIoChatClient.req_say,
    "msg": SocketIoChatClient.req_msg,
    "join": SocketIoChatClient.req_join,
    "part": SocketIoChatClient.req_part,
    "nick": SocketIoChatClient.req_nick,
    "who": SocketIoChatClient.req_who,
    "rooms": SocketIoChatClient.req_rooms,
    "history": SocketIoChatClient.req_history,
}


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
            self._log.info("refused an engine.io session from {host}: {why}", host=host, why=e.code)
            if e.code == "banned":
                raise EngineError(FORBIDDEN, 403, e.message)
            raise EngineError(BAD_REQUEST, 503, e.message)

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
