# -*- test-case-name: tests.frontends.socketio.test_engineio -*-
"""
The Engine.IO sessions of this process (L{EngineServer}): their settings,
who may open one (L{SessionAdmission}), and their sids.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Callable, Protocol, cast

from twisted.logger import Logger

from twisted_chat.core.settings import Settings
from twisted_chat.frontends.socketio.engineio.packets import BAD_REQUEST, EngineError
from twisted_chat.frontends.socketio.engineio.session import EngineHandler, EngineSocket

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred
    from twisted.internet.interfaces import IReactorTime


class SessionAdmission(Protocol):
    """
    Who may open a session: counts sessions by the client's address.
    """

    def admit(self, host: str) -> None:
        """
        Count one more session from C{host}, or raise L{EngineError} (the
        HTTP status and message the client gets).
        """

    def release(self, host: str) -> None:
        """
        A session from C{host} is over.
        """


class EngineServer:
    """
    The Engine.IO sessions of this process and their settings.

    Sessions live in memory here; a request for one that reaches another
    process is relayed here by that process (see the relay module).
    """

    _log = Logger()

    def __init__(
        self,
        handlerFactory: Callable[[EngineSocket], EngineHandler],
        clock: IReactorTime | None = None,
        pingInterval: float = 25.0,
        pingTimeout: float = 20.0,
        maxPayload: int = 100000,
        maxSessions: int = 10000,
        allowedOrigins: list[str] | None = None,
        upgradeTimeout: float = 10.0,
        admission: SessionAdmission | None = None,
        settings: Settings | None = None,
    ) -> None:
        self.handlerFactory = handlerFactory
        #: the limits that can be reloaded (C{maxOutgoing}), read when
        #: needed: the chat service's settings, or defaults of its own
        self.settings = settings if settings is not None else Settings()
        #: who may open a session (the chat's connection limits and bans), or None
        self.admission = admission
        self._clock = clock
        self.pingInterval = pingInterval
        self.pingTimeout = pingTimeout
        self.maxPayload = maxPayload
        self.maxSessions = maxSessions
        self.allowedOrigins = list(allowedOrigins or [])
        self.upgradeTimeout = upgradeTimeout
        self.sessions: dict[str, EngineSocket] = {}
        #: what every session id ends with: its owner (see the relay), or nothing
        self.sidSuffix = ""

    @property
    def clock(self) -> IReactorTime:
        clock = self._clock
        if clock is None:
            from twisted.internet import reactor

            clock = self._clock = cast("IReactorTime", reactor)
        return clock

    def full(self) -> bool:
        return len(self.sessions) >= self.maxSessions

    def admit(self, host: str) -> None:
        """
        Count a new session from C{host} with the admission policy, or raise
        L{EngineError} (503, or 403 for a banned address).
        """
        if self.admission is not None:
            self.admission.admit(host)

    def admitLater(self, host: str) -> Deferred[None] | None:
        """
        L{admit}, possibly answered later (the machine's count decides, in a
        worker): None once admitted, or a Deferred that fails with the
        L{EngineError} of a refusal.
        """
        admission = self.admission
        if admission is None:
            return None
        later = getattr(admission, "admitLater", None)
        if later is None:
            admission.admit(host)
            return None
        return cast("Deferred[None] | None", later(host))

    def release(self, host: str) -> None:
        if self.admission is not None:
            self.admission.release(host)

    def newSession(self, transport: str, peer: str, host: str = "", admitted: bool = False) -> EngineSocket:
        """
        A new session; C{admitted} when L{admit} was already called for it.
        """
        if self.full():
            if admitted:
                self.release(host)
            self._log.warn(
                "refused an engine.io session from {peer}: {count} sessions already",
                peer=peer,
                count=len(self.sessions),
            )
            raise EngineError(BAD_REQUEST, 503, "Too many sessions")
        if not admitted:
            self.admit(host)
        sid = secrets.token_urlsafe(15) + self.sidSuffix
        while sid in self.sessions:
            sid = secrets.token_urlsafe(15) + self.sidSuffix
        socket = EngineSocket(self, sid, transport, peer, host)
        self.sessions[sid] = socket
        return socket

    def forget(self, socket: EngineSocket) -> None:
        """
        C{socket}'s session is over: it no longer counts.
        """
        if self.sessions.get(socket.sid) is socket:
            del self.sessions[socket.sid]
            self.release(socket.host)
