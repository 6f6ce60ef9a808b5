# -*- test-case-name: tests.core.test_service,tests.core.test_history,tests.core.test_refs,tests.core.test_nicks,tests.core.test_service_fuzz -*-
"""
The chat service: the one service every front-end of a node shares.

It knows nothing of sockets. Front-ends call a L{Member}'s methods with
decoded requests; the service answers through the member's L{IChatClient}
with the events of L{twisted_chat.core.events}. Requests it refuses raise
L{ChatError} synchronously and change nothing.

The service holds the rooms and members of its node, delivery, quitting
and shutdown; its parts do the rest (L{twisted_chat.core.parts}): joins
and leaves, nicks and their owners, messages, the history of a join,
moderation, join and leave notices, and what other nodes say. What members
and front-ends ask of the parts goes through L{ServiceFront}.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, cast

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from twisted_chat.core.broker import LocalBroker
from twisted_chat.core.connlog import ConnectionLog
from twisted_chat.core.conversation import Conversation
from twisted_chat.core.errors import FailureLog
from twisted_chat.core.events import Event, Notice
from twisted_chat.core.front import ServiceFront
from twisted_chat.core.history import JoinHistory
from twisted_chat.core.interfaces import IBroker, IMessageStore
from twisted_chat.core.limits import Admission
from twisted_chat.core.member import Member, MemberInfo
from twisted_chat.core.messages import Messages
from twisted_chat.core.moderation import Moderation
from twisted_chat.core.nicks import Nicks
from twisted_chat.core.notices import Notices
from twisted_chat.core.remote import ClusterEvents
from twisted_chat.core.rooms import Rooms
from twisted_chat.core.room import Room
from twisted_chat.core.settings import Settings
from twisted_chat.core.stats import Stats, statusLines

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorTime

LOBBY = "#lobby"

def _setting(name: str) -> Any:
    """
    A property of the service that reads and writes C{settings.NAME}.
    """

    def get(service: ChatService) -> Any:
        return getattr(service.settings, name)

    def set(service: ChatService, value: Any) -> None:
        setattr(service.settings, name, value)

    return property(get, set, doc="C{settings.%s}" % (name,))


def _settingsOf(settings: Settings | None, admission: Admission | None, **limits: float | None) -> Settings:
    """
    The settings of a new service: C{settings}, the admission's, or new
    ones, with the C{limits} given (those not C{None}) put into them.
    """
    if settings is None:
        settings = admission.settings if admission is not None else Settings()
    elif admission is not None and admission.settings is not settings:
        raise ValueError("the admission must read the service's settings")
    for name, value in limits.items():
        if value is not None:
            setattr(settings, name, value)
    return settings


class ChatService(ServiceFront, Service):
    """
    The one service every front-end of a node shares.
    """

    _log = Logger()

    def __init__(
        self,
        store: IMessageStore,
        clock: IReactorTime | None = None,
        historySize: int | None = None,
        maxTextLength: int | None = None,
        maxRoomsPerMember: int | None = None,
        resumeLimit: int = 1000,
        shutdownTimeout: float = 5.0,
        refWindow: float = 3600.0,
        pruneInterval: float = 600.0,
        passwords: dict[str, str] | None = None,
        requireAuth: bool = False,
        admins: Iterable[str] = (),
        floodRate: float | None = None,
        floodBurst: float | None = None,
        floodKick: float | None = None,
        admission: Admission | None = None,
        stats: Any = None,
        drainSpread: float = 10.0,
        logMessages: bool = False,
        broker: IBroker | None = None,
        settings: Settings | None = None,
        logConnections: bool = False,
        connectionSummary: float = 60.0,
        noticeDelay: float | None = None,
    ) -> None:
        #: the limits in effect, read live by the service and every front-end
        #: (a reload changes them here); the limits given as arguments are
        #: put into it
        self.settings = settings = _settingsOf(
            settings,
            admission,
            historySize=historySize,
            maxTextLength=maxTextLength,
            maxRoomsPerMember=maxRoomsPerMember,
            floodRate=floodRate,
            floodBurst=floodBurst,
            floodKick=floodKick,
        )
        #: where messages are kept (see IMessageStore)
        self.store: IMessageStore = store
        self._clock = clock
        self.resumeLimit = resumeLimit
        self.shutdownTimeout = shutdownTimeout
        self.rooms: dict[str, Room[Member]] = {}
        self.members: set[Member] = set()
        self._allGone: Deferred[None] | None = None
        self.refWindow = refWindow
        self.pruneInterval = pruneInterval
        self._pruner: LoopingCall | None = None
        self.admission = admission if admission is not None else Admission(settings=settings)
        #: In a room with more members than this, joins and leaves are told
        #: only to the member concerned, and member lists (on join, /who)
        #: name this many members and give the total: otherwise every join
        #: costs O(members) deliveries and bytes, O(members²) to fill a room.
        self.announceLimit = 1000
        #: where the service reports what happens (metrics); see core.stats
        self.stats: Stats = stats if stats is not None else Stats()
        self.admission.stats = self.stats
        #: on shutdown, clients are told to reconnect after a random delay of
        #: up to this many seconds, so a restart causes no reconnect storm
        self.drainSpread = drainSpread
        #: the daemon's ring of recent warnings and errors (for /status)
        self.recentErrors: Any = None
        self.startedAt = 0.0
        #: how failures of the store are logged (see logStoreFailure)
        self._storeFailures = FailureLog(self._log, lambda: self.clock)
        #: how connections show in the log: a count and a summary every
        #: C{connectionSummary} seconds, and with C{logConnections} a debug
        #: line for each (see core.connlog)
        self.connectionLog = ConnectionLog(lambda: self.clock, connectionSummary, logConnections, lambda: len(self.members))
        self._makeParts(passwords, admins, requireAuth, logMessages, noticeDelay)
        #: how this node shares rooms with others (see IBroker)
        self.broker: IBroker = broker if broker is not None else LocalBroker(self.store)
        self.broker.attach(ClusterEvents(self, self.nicks, self.moderation, self.deliverMessage))
        self.setName("chat")

    def _makeParts(
        self,
        passwords: dict[str, str] | None,
        admins: Iterable[str],
        requireAuth: bool,
        logMessages: bool,
        noticeDelay: float | None,
    ) -> None:
        """
        Make the service's parts (see L{twisted_chat.core.parts}).
        """
        self.nicks = Nicks(self, passwords, admins, requireAuth)
        self.messages = Messages(self, self.nicks, self.refWindow, logMessages)
        self.moderation = Moderation(self, self.nicks)
        self.conversation = Conversation(self, self.nicks, self.messages)
        self.joinHistory = JoinHistory(self)
        self.roomsPart = Rooms(self, self.nicks, self.moderation, self.joinHistory)
        #: join and leave notices, told to a room together (see core.notices)
        self.notices = Notices(self, noticeDelay)

    # The service's limits, as they were attributes before they moved to
    # its settings: the same values, read and written there.
    historySize = _setting("historySize")
    maxTextLength = _setting("maxTextLength")
    maxRoomsPerMember = _setting("maxRoomsPerMember")
    floodRate = _setting("floodRate")
    floodBurst = _setting("floodBurst")
    floodKick = _setting("floodKick")

    @property
    def passwords(self) -> dict[str, str]:
        """
        Registered nicks (nick key -> password hash), from --auth.
        """
        return self.nicks.passwords

    @passwords.setter
    def passwords(self, passwords: dict[str, str]) -> None:
        self.nicks.passwords = passwords

    @property
    def admins(self) -> set[str]:
        return self.nicks.admins

    @property
    def requireAuth(self) -> bool:
        return self.nicks.requireAuth

    @property
    def clock(self) -> IReactorTime:
        if self._clock is None:
            from twisted.internet import reactor

            self._clock = cast("IReactorTime", reactor)
        return self._clock

    def now(self) -> float:
        return self.clock.seconds()

    def isRunning(self) -> bool:
        return bool(self.running)

    # Service life cycle

    def startService(self) -> None:
        Service.startService(self)
        self.startedAt = self.now()
        self.store.open()
        now = self.now()
        self.messages.refs.load(self.store.refs(now - self.refWindow))
        self.nicks.tokens = self.store.tokens()
        self.connectionLog.start()
        if self.pruneInterval > 0:
            self._pruner = LoopingCall(self._prune)
            self._pruner.clock = self.clock
            self._pruner.start(self.pruneInterval, now=True).addErrback(
                lambda f: self._log.failure("pruning stopped", f)
            )

    def _prune(self) -> Deferred[None]:
        def done(count: int) -> None:
            if count:
                self._log.info("pruned {count} messages past retention", count=count)

        def failed(f: Failure) -> None:
            self.logStoreFailure("pruning history failed", f)

        return self.store.prune(self.now()).addCallbacks(done, failed)

    def stopService(self) -> Deferred[object]:
        """
        Tell every member the server is shutting down, close their
        connections and wait (at most C{shutdownTimeout}) until they are gone.
        """
        Service.stopService(self)
        if self._pruner is not None and self._pruner.running:
            self._pruner.stop()
        self.notices.stop()
        self._log.info("shutting down: closing {count} connections", count=len(self.members))
        done: Deferred[None] = Deferred()
        if self.members:
            self._allGone = done
            import random

            for m in list(self.members):
                try:
                    delay = 1 + random.random() * self.drainSpread if self.drainSpread else None
                    m.client.close("server shutting down", delay)
                except Exception:
                    self._log.failure("closing {member!r} failed", member=m.nick)
                    self.quit(m, "server shutting down")
            done.addTimeout(self.shutdownTimeout, self.clock, onTimeoutCancel=lambda r, t: None)
        else:
            done.callback(None)
        done.addCallback(lambda _: self.store.close())

        def closed(result: object) -> object:
            self._storeFailures.flush()
            self.connectionLog.stop()
            return result

        return done.addBoth(closed)

    # Delivery

    def send(self, member: Member, event: Event) -> None:
        """
        Hand one event to one member; a failing member is dropped, alone.
        While the history of one of its rooms is read, the event waits
        behind what waits already (see L{twisted_chat.core.history}).
        """
        backlog = member.backlog
        if backlog is not None:
            backlog.append((None, event))
            return
        self.deliverNow(member, event)

    def deliverNow(self, member: Member, event: Event) -> None:
        """
        Hand one event to one member now, whatever waits for it; a failing
        member is dropped, alone.
        """
        try:
            member.client.deliver(event)
        except Exception:
            self._log.failure("delivery to {nick} failed; dropping it", nick=member.nick)
            self._drop(member)

    def broadcast(self, room: Room[Member], event: Event) -> None:
        """
        Hand C{event} to every member of C{room} on this node: room
        messages to the fast connections all at once, the rest one by one;
        held for a member reading the room's history, skipped for one whose
        history already had it (see L{twisted_chat.core.history}). A member
        whose delivery fails is dropped once everyone else had the event.
        """
        name = room.name
        failed: list[Member] | None = None
        if room.notices is not None:
            # (the room's join and leave notices go first, in order)
            self.notices.flushNotices(room)
        if event.kind == "message":
            # The hot path: the members with a fast sink all at once.
            fan, groups, members = room.fanOut()
            if groups:
                fan.broadcast(groups, event)
        else:
            members = room.snapshot()
        for m in members:
            held = m.held
            if held is None or name not in held:
                floor = m.floors
                if floor is not None and name in floor:
                    if event.kind in ("message", "update") and event.id <= floor[name]:  # type: ignore[attr-defined]
                        continue  # (in the history it got already)
                    if event.kind in ("message", "update", "epoch"):
                        # This node has caught up with that history.
                        self.joinHistory.dropFloor(m, name)
            if held is not None:
                # (behind a history being read: in order, see core.history)
                m.backlog.append((name, event))  # type: ignore[union-attr]
                continue
            try:
                m.client.deliver(event)
            except Exception:
                self._log.failure("delivery to {nick} failed; dropping it", nick=m.nick)
                if failed is None:
                    failed = []
                failed.append(m)
        # Dropped only once everyone had this event, so that the others see
        # it before the failed member's leave notice.
        if failed is not None:
            for m in failed:
                self._drop(m)

    def dropFailed(self, member: Member) -> None:
        """
        A delivery to C{member} failed (and was logged) outside a
        broadcast loop of ours: close and drop it, alone.
        """
        self._drop(member)

    def _drop(self, member: Member) -> None:
        if member.gone:
            return
        try:
            member.client.close("internal error")
        except Exception:
            pass
        self.quit(member, "disconnected")

    def quit(self, member: Member, reason: str) -> None:
        """
        Take C{member} out of the chat: every room, and its nick.
        """
        if member.gone:
            return
        # Gone before the leave notices go out: a member whose delivery of
        # one of them fails is not closed and dropped a second time.
        member.gone = True
        self.stats.disconnected(reason)
        # (what waited behind a history being read goes with it; it still
        # hears itself leave its rooms)
        member.held = member.backlog = None
        for name in list(member.rooms):
            self.leave(member, name, reason)
        member.floors = None
        self.members.discard(member)
        if self.nicks.forget(member):
            self.broker.memberGone(member)
        self.connectionLog.disconnected(member.nick, reason)
        if self._allGone is not None and not self.members:
            d, self._allGone = self._allGone, None
            d.callback(None)

    def logStoreFailure(self, format: str, failure: Failure, **fields: Any) -> None:
        """
        Log a failure of the store met by C{format} (a log format with
        C{fields}): L{StoreUnavailable} as one warning line (repeats
        summed up, see L{FailureLog}), anything else with its traceback.
        Front-ends log the messages they could not store through this.
        """
        self._storeFailures.failure(format, failure, **fields)

    # Server-wide

    def notice(self, text: str) -> None:
        """
        Send a server notice to every connected member.
        """
        ev = Notice(text)
        for m in list(self.members):
            self.send(m, ev)

    def statusLines(self) -> list[str]:
        """
        What C{/status} tells an admin about this node.
        """
        return statusLines(self, self.recentErrors, self.startedAt, self.now())


__all__ = ["ChatService", "Member", "MemberInfo", "Room", "LOBBY"]
