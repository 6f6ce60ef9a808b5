# -*- test-case-name: tests.test_service -*-
"""
The chat service: rooms, members, nicknames, presence, history, broadcast.

It knows nothing of sockets. Front-ends call a L{Member}'s methods with
decoded requests; the service answers through the member's L{IChatClient}
with the events of L{twisted_chat.core.events}. Requests it refuses raise
L{ChatError} synchronously and change nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import OrderedDict
from itertools import islice
from typing import TYPE_CHECKING, Any, Callable, Iterable

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_chat.core.errors import ChatError, FailureLog
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
    RoomList,
    TopicChanged,
)
from twisted_chat.core.interfaces import IBroker, IChatClient, IClusterEvents, IMessageStore
from twisted_chat.core.limits import Admission, FloodGuard
from twisted_chat.stores.memory import MemoryStore
from twisted_chat.core.names import checkNick, nickKey, normalizeRoom
from twisted_chat.core.stats import Stats, statusLines
from twisted_chat.core.settings import Settings

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorTime

LOBBY = "#lobby"


def _sortedNicks(nicks: Iterable[str]) -> list[str]:
    return sorted(nicks, key=str.lower)


_DUMMY_HASH = "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="


def _NICKLIKE(text: str) -> bool:
    try:
        checkNick(text)
    except ChatError:
        return False
    return True


def hashToken(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class _Ref:
    """
    A client ref seen recently: its message once stored, and who waits for it.
    """

    __slots__ = ("time", "message", "waiting")

    def __init__(self, time: float, message: Message | Private | None) -> None:
        self.time = time
        self.message = message
        self.waiting: list[Deferred[Any]] = []

    def result(self) -> Deferred[Any]:
        if self.message is not None:
            return succeed(self.message)
        d: Deferred[Any] = Deferred()
        self.waiting.append(d)
        return d

    def stored(self, message: Message | Private) -> None:
        self.message = message
        waiting, self.waiting = self.waiting, []
        for d in waiting:
            d.callback(message)

    def failed(self, f: Failure) -> None:
        waiting, self.waiting = self.waiting, []
        for d in waiting:
            d.errback(f)


def _packRef(time: float, message: Message | Private) -> tuple[Any, ...]:
    """
    A stored message as a ref entry: a tuple of strings and numbers, which
    the garbage collector stops tracking, where a _Ref and a Message (two
    tracked objects per ref, up to 100,000 refs) made every full collection
    walk them all: a stall of a few hundred milliseconds.
    """
    if isinstance(message, Private):
        return ("p", time, message.id, message.sender, message.recipient, message.text, message.time)
    return ("m", time, message.room, message.id, message.epoch, message.sender, message.text, message.time, message.action)


def _unpackRef(entry: tuple[Any, ...]) -> Message | Private:
    if entry[0] == "p":
        return Private(*entry[2:])
    return Message(*entry[2:])


def _withHeldBefore(messages: list[Message], held: list[Event]) -> list[Message]:
    """
    A joiner's history C{messages}, with the live messages held for it
    during the read that came just before them: a history of the last N
    messages can start after messages stored since the member joined (a
    burst while the store was slow), which it must see all the same.
    """
    first = messages[0]
    older = {
        ev.id: ev for ev in held if isinstance(ev, Message) and ev.epoch == first.epoch and ev.id < first.id
    }
    if not older:
        return messages
    before: list[Message] = []
    id = first.id - 1
    while id in older:
        before.append(older[id])
        id -= 1
    return before[::-1] + messages if before else messages


class Room:
    """
    A room and its members, in joining order.

    C{snapshot()} is the tuple a broadcast iterates over; it is rebuilt only
    when membership changes, so a broadcast neither copies the member list nor
    trips over a member that leaves in the middle of it.
    """

    __slots__ = ("name", "members", "_snapshot", "_fan", "ops", "bans", "banHosts", "topic", "topicBy", "presence")

    def __init__(self, name: str) -> None:
        self.name = name
        self.members: dict[Member, None] = {}
        self._snapshot: tuple[Member, ...] | None = None
        self._fan: tuple[Any, tuple[Any, ...], tuple[Member, ...]] | None = None
        #: the room's operators (its creator first); a connection, not a nick,
        #: so nobody inherits operator rights by taking a nick
        self.ops: set[Member] = set()
        #: banned nick keys and addresses
        self.bans: set[str] = set()
        #: nick key -> the address banned along with that nick (unbanned with it)
        self.banHosts: dict[str, str] = {}
        self.topic = ""
        self.topicBy = ""
        #: (limit, sorted nicks of the first `limit` members), or None
        self.presence: tuple[int, list[str]] | None = None

    def add(self, member: Member) -> None:
        self.members[member] = None
        self._snapshot = self._fan = None
        cached = self.presence
        if cached is not None and len(self.members) <= cached[0]:
            # (a member past the first cached[0] does not change that list)
            self.presence = None

    def remove(self, member: Member) -> None:
        self.members.pop(member, None)
        self.presence = None
        self.ops.discard(member)
        self._snapshot = self._fan = None

    def snapshot(self) -> tuple[Member, ...]:
        s = self._snapshot
        if s is None:
            s = self._snapshot = tuple(self.members)
        return s

    def fanOut(self) -> tuple[Any, tuple[Any, ...], tuple[Member, ...]]:
        """
        How a room message reaches the members: C{(fan, groups, others)}.
        Members whose client offers a C{fastSink} (see L{IChatClient}) are
        handed to C{fan.broadcast(groups, event)} all at once, C{groups}
        being C{(key, sinks)} pairs (sinks of one key take the same bytes);
        the C{others} get C{deliver()} one by one. A member still fetching
        this room's history is among the others (its events are held), and
        so is one whose history ran ahead of this node's deliveries (see
        C{Member._floor}).
        Rebuilt only when membership changes (or a hold starts or ends).
        """
        f = self._fan
        if f is None:
            fan: Any = None
            groups: dict[str, list[Any]] = {}
            others: list[Member] = []
            name = self.name
            for m in self.members:
                sink = getattr(m.client, "fastSink", None)
                held = m._held
                floor = m._floor
                if sink is None or (held is not None and name in held) or (floor is not None and name in floor):
                    others.append(m)
                    continue
                if fan is None:
                    fan = sink.batcher
                elif sink.batcher is not fan:
                    others.append(m)
                    continue
                groups.setdefault(sink.key, []).append(sink)
            f = self._fan = (fan, tuple((k, tuple(v)) for k, v in groups.items()), tuple(others))
        return f


class Member:
    """
    One connection's identity in the service: nick, rooms, current room.

    Front-ends hold a member and call its methods; the member is the
    "avatar" of twisted.words.
    """

    __slots__ = (
        "service", "client", "nick", "rooms", "current", "peer", "host", "_held", "_floor", "gone", "owner",
        "token", "authenticated", "flood",
    )

    def __init__(self, service: ChatService, client: IChatClient, nick: str, peer: str, host: str = "") -> None:
        self.service = service
        self.client = client
        self.nick = nick
        self.peer = peer
        self.host = host
        #: the nick key this connection logged in as (with --auth), or None
        self.authenticated: str | None = None
        self.flood = FloodGuard(service.settings.floodBurst, service.now())
        # room name -> Room, in joining order
        self.rooms: dict[str, Room] = {}
        self.current: str | None = None
        # room name -> events held back while that room's history is fetched
        self._held: dict[str, list[Event]] | None = None
        # room name -> the last message id of the history this member got,
        # while this node has not delivered that far yet (a store shared by
        # several nodes can answer a history read with messages that reach
        # this node live a moment later): live messages up to it are skipped
        self._floor: dict[str, int] | None = None
        self.gone = False
        #: whether this connection proved it owns its nick (see ChatService.connect)
        self.owner = False
        #: the owner token issued to this connection, when it got a new one
        self.token: str | None = None

    def __repr__(self) -> str:
        return "<Member %s from %s>" % (self.nick, self.peer)

    # Requests; each raises ChatError when refused.

    def join(self, room: str, since: tuple[str, int] | None = None) -> tuple[str, bool]:
        """
        Join C{room} (or switch to it if already a member) and make it the
        current room. Returns the canonical name and whether it was newly joined.
        """
        self.service._spend(self)
        return self.service._join(self, room, since)

    def part(self, room: str | None = None, reason: str = "left") -> str:
        """
        Leave C{room} (default: the current one). Returns its name.
        """
        self.service._spend(self)
        return self.service._part(self, self._roomOrCurrent(room), reason)

    def say(
        self, text: str, room: str | None = None, action: bool = False, ref: str | None = None
    ) -> Deferred[Message]:
        """
        Say C{text} in C{room} (default: current). The Deferred fires with the
        stored L{Message} once it is durable and has been handed to every member.

        A C{ref} makes the request idempotent: the same nick sending the same
        ref again (after a reconnect, say) gets the first message back instead
        of creating a second one.
        """
        self.service._spend(self)
        return self.service._say(self, self._roomOrCurrent(room), text, action, ref)

    def private(self, nick: str, text: str, ref: str | None = None) -> Deferred[Private]:
        """
        Send C{text} to C{nick} only (idempotent with a C{ref}, like L{say}).
        """
        self.service._spend(self)
        return self.service._private(self, nick, text, ref)

    def floodWait(self) -> float:
        """
        Seconds to wait before the next request (0: now); see
        L{ChatService.floodWait}.
        """
        service = self.service
        settings = service.settings
        rate = settings.floodRate
        if rate <= 0:
            return 0.0
        return self.flood.wait(service.clock.seconds(), rate, settings.floodBurst)

    def privateHistory(self, afterId: int | None = None) -> None:
        """
        Ask for the private messages to or from this nick with ids above
        C{afterId} (default: the recent ones): answered with a
        L{PrivateHistory} event. Only for a member that proved it owns its
        nick; others get an empty list.
        """
        self.service._privateHistory(self, afterId)

    def setNick(self, nick: str) -> str:
        """
        Change nickname; returns the new one.
        """
        self.service._spend(self)
        return self.service._setNick(self, nick)

    def who(self, room: str | None = None) -> None:
        """
        Ask for the members of C{room}: answered with a L{Presence} event.
        """
        self.service._spend(self)
        name = self._roomOrCurrent(room, mustBeMember=False)
        self.service._who(self, name)

    def listRooms(self) -> None:
        """
        Ask for all rooms: answered with a L{RoomList} event.
        """
        self.service._spend(self)
        self.client.deliver(RoomList(self.service.roomList()))

    def history(self, room: str | None = None, limit: int = 20, before: int | None = None) -> None:
        """
        Ask for past messages: answered with a L{History} event.
        """
        self.service._spend(self)
        name = self._roomOrCurrent(room, mustBeMember=False)
        self.service._history(self, name, limit, before)

    def login(self, nick: str, password: str) -> Deferred[str]:
        """
        Prove with C{password} that this connection is the registered C{nick}
        and take that nick. Fires with the nick, or fails with L{ChatError}.
        """
        self.service._spend(self)
        return self.service._login(self, nick, password)

    def kick(self, nick: str, reason: str = "", room: str | None = None) -> str:
        """
        Put C{nick} out of C{room} (default: current); for the room's
        operators and server admins. Returns the nick kicked.
        """
        self.service._spend(self)
        return self.service._kick(self, self._roomOrCurrent(room), nick, reason)

    def ban(self, target: str, reason: str = "", room: str | None = None) -> str:
        """
        Ban a nick or an address from C{room} (and kick whoever matches).
        """
        self.service._spend(self)
        return self.service._ban(self, self._roomOrCurrent(room), target, reason)

    def unban(self, target: str, room: str | None = None) -> str:
        self.service._spend(self)
        return self.service._unban(self, self._roomOrCurrent(room), target)

    def setTopic(self, topic: str, room: str | None = None) -> None:
        """
        Set (or with C{""} clear) the topic of C{room}; operators only.
        """
        self.service._spend(self)
        self.service._setTopic(self, self._roomOrCurrent(room), topic)

    def giveOp(self, nick: str, room: str | None = None) -> str:
        """
        Make C{nick} an operator of C{room}; operators only.
        """
        self.service._spend(self)
        return self.service._giveOp(self, self._roomOrCurrent(room), nick)

    def serverNotice(self, text: str) -> None:
        """
        Send a notice to everyone on the server; admins only.
        """
        self.service._spend(self)
        if not self.service.isAdmin(self):
            raise ChatError("not-allowed", "only server admins can send notices")
        self.service.notice(self.service._checkText(text))

    def status(self) -> None:
        """
        Ask for the node's status (connections, rooms, recent errors): server
        admins only; answered with L{Notice} events.
        """
        self.service._spend(self)
        if not self.service.isAdmin(self):
            raise ChatError("not-allowed", "only server admins can see the status")
        service = self.service
        for line in statusLines(service, service.recentErrors, service.startedAt, service.now()):
            self.client.deliver(Notice("status: " + line))

    def quit(self, reason: str = "quit") -> None:
        """
        Leave every room and give up the nick. Safe to call more than once.
        """
        self.service._quit(self, reason)

    def _roomOrCurrent(self, room: str | None, mustBeMember: bool = True) -> str:
        if room is None or room == "":
            if self.current is None:
                raise ChatError("not-in-room", "you are in no room: /join one first")
            return self.current
        name = normalizeRoom(room)
        if mustBeMember and name not in self.rooms:
            raise ChatError("not-in-room", "you are not in %s" % (name,))
        return name


def _setting(name: str) -> Any:
    """
    A property of the service that reads and writes C{settings.NAME}.
    """

    def get(service: ChatService) -> Any:
        return getattr(service.settings, name)

    def set(service: ChatService, value: Any) -> None:
        setattr(service.settings, name, value)

    return property(get, set, doc="C{settings.%s}" % (name,))


@implementer(IClusterEvents)
class ChatService(Service):
    """
    The one service every front-end shares.
    """

    _log = Logger()

    def __init__(
        self,
        store: IMessageStore | None = None,
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
    ) -> None:
        if settings is None:
            settings = admission.settings if admission is not None else Settings()
        elif admission is not None and admission.settings is not settings:
            raise ValueError("the admission must read the service's settings")
        #: the limits in effect, read live by the service and every front-end
        #: (a reload changes them here); the limits given as arguments are
        #: put into it
        self.settings = settings
        for name, value in (
            ("historySize", historySize),
            ("maxTextLength", maxTextLength),
            ("maxRoomsPerMember", maxRoomsPerMember),
            ("floodRate", floodRate),
            ("floodBurst", floodBurst),
            ("floodKick", floodKick),
        ):
            if value is not None:
                setattr(settings, name, value)
        self.store: IMessageStore = store if store is not None else MemoryStore()
        from twisted_chat.core.broker import LocalBroker

        #: how this node shares rooms with others (see IBroker)
        self.broker: IBroker = broker if broker is not None else LocalBroker(self.store)
        self.broker.attach(self)
        self._clock = clock
        self.resumeLimit = resumeLimit
        self.shutdownTimeout = shutdownTimeout
        self.rooms: dict[str, Room] = {}
        self.members: set[Member] = set()
        self._nicks: dict[str, Member] = {}
        self._guest = 0
        self._allGone: Deferred[None] | None = None
        self.refWindow = refWindow
        self.pruneInterval = pruneInterval
        # (sender nick key, client ref) -> its message, for idempotent resends
        self._refs: OrderedDict[tuple[str, str], _Ref | tuple[Any, ...]] = OrderedDict()
        self._tokens: dict[str, str] = {}
        self._pruner: LoopingCall | None = None
        #: registered nicks (nick key -> password hash), from --auth
        self.passwords: dict[str, str] = dict(passwords or {})
        self.requireAuth = requireAuth
        self.admins = {nickKey(a) for a in admins}
        self.admission = admission if admission is not None else Admission(settings=settings)
        #: In a room with more members than this, joins and leaves are told
        #: only to the member concerned, and member lists (on join, /who)
        #: name this many members and give the total: otherwise every join
        #: costs O(members) deliveries and bytes, O(members²) to fill a room.
        self.announceLimit = 1000
        #: where the service reports what happens (metrics); see _ops.Stats
        self.stats = stats if stats is not None else Stats()
        self.admission.stats = self.stats
        #: on shutdown, clients are told to reconnect after a random delay of
        #: up to this many seconds, so a restart causes no reconnect storm
        self.drainSpread = drainSpread
        self.logMessages = logMessages
        #: the daemon's ring of recent warnings and errors (for /status)
        self.recentErrors: Any = None
        self.startedAt = 0.0
        #: how failures of the store are logged (see logStoreFailure)
        self._storeFailures = FailureLog(self._log, lambda: self.clock)
        self.setName("chat")

    # The service's limits, as they were attributes before they moved to
    # its settings: the same values, read and written there.
    historySize = _setting("historySize")
    maxTextLength = _setting("maxTextLength")
    maxRoomsPerMember = _setting("maxRoomsPerMember")
    floodRate = _setting("floodRate")
    floodBurst = _setting("floodBurst")
    floodKick = _setting("floodKick")

    @property
    def clock(self) -> IReactorTime:
        if self._clock is None:
            from twisted.internet import reactor

            self._clock = reactor  # type: ignore[assignment]
        return self._clock  # type: ignore[return-value]

    def now(self) -> float:
        return self.clock.seconds()

    # Service life cycle

    def startService(self) -> None:
        Service.startService(self)
        self.startedAt = self.now()
        self.store.open()
        now = self.now()
        for key, ref, msg in self.store.refs(now - self.refWindow):
            self._refs[(key, ref)] = _packRef(msg.time, msg)  # type: ignore[attr-defined]
        self._tokens = self.store.tokens()
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
                    self._quit(m, "server shutting down")
            done.addTimeout(self.shutdownTimeout, self.clock, onTimeoutCancel=lambda r, t: None)
        else:
            done.callback(None)
        done.addCallback(lambda _: self.store.close())

        def closed(result: object) -> object:
            self._storeFailures.flush()
            return result

        return done.addBoth(closed)

    # Connections

    def connect(
        self,
        client: IChatClient,
        nick: str | None = None,
        peer: str = "",
        token: str | None = None,
        host: str = "",
        authenticated: bool = False,
    ) -> Member:
        """
        Register a new connection under C{nick}, or a fresh guest nick.

        Nick ownership (for private history): the first connection that asks
        for a nick by name gets a secret C{member.token}; a later connection
        that presents it is the nick's C{owner}. Without it the nick can still
        be used while free, but its private history is not shown.
        """
        owner = False
        issued = None
        force = False
        if nick is not None:
            key = nickKey(checkNick(nick))
            known = self._tokens.get(key)
            other = self._nicks.get(key)
            validToken = (
                known is not None and isinstance(token, str) and hmac.compare_digest(hashToken(token), known)
            )
            if other is None and validToken and self.broker.remoteNick(key) is not None:
                # The owner is back on this node while another node (or a
                # dead one) still holds the nick: take it over.
                force = True
            elif other is not None and validToken:
                # The nick's owner is back (after a drop the server has not
                # noticed yet): the stale connection gives way to it.
                self._giveWay(other, "{nick} reconnected: closing its previous connection")
            self._checkNickFree(nick, None, force)
            if key in self.passwords and not authenticated:
                raise ChatError("nick-registered", "%s is registered: log in with its password" % (nick,))
            known = self._tokens.get(key)
            if known is None:
                issued = secrets.token_urlsafe(18)
                self._tokens[key] = known = hashToken(issued)
                self.store.saveToken(key, known).addErrback(
                    lambda f: self.logStoreFailure("saving the token of {nick} failed", f, nick=nick)
                )
                owner = True
            elif isinstance(token, str) and hmac.compare_digest(hashToken(token), known):
                owner = True
        else:
            nick = self._guestNick()
        m = Member(self, client, nick, peer, host)
        if authenticated:
            m.authenticated = nickKey(nick)
            owner = True
        m.owner = owner
        m.token = issued
        self.members.add(m)
        self._nicks[nickKey(nick)] = m
        self.broker.memberAdded(m, force)
        self._log.info(
            "{nick} connected from {peer} via {frontend}",
            nick=nick,
            peer=peer,
            frontend=getattr(client, "kind", "?"),
        )
        return m

    def connectWithPassword(
        self,
        client: IChatClient,
        nick: str,
        password: str,
        peer: str = "",
        token: str | None = None,
        host: str = "",
    ) -> Deferred[Member]:
        """
        Like L{connect} for a registered nick, once C{password} is checked
        (in a thread: checking costs tens of milliseconds of CPU).
        """
        checkNick(nick)
        d = self._checkPassword(nick, password)
        return d.addCallback(lambda _: self.connect(client, nick, peer, token, host, authenticated=True))

    def _checkPassword(self, nick: str, password: object) -> Deferred[None]:
        from twisted.internet.threads import deferToThreadPool

        from twisted_chat.core.auth import verifyPassword

        encoded = self.passwords.get(nickKey(nick))
        if encoded is None or not isinstance(password, str):
            # The same work for an unknown nick, so timing tells nothing.
            encoded = _DUMMY_HASH
        reactor = self.clock
        pool = reactor.getThreadPool()  # type: ignore[attr-defined]
        d = deferToThreadPool(reactor, pool, verifyPassword, str(password), encoded)

        def checked(ok: bool) -> None:
            if not ok or nickKey(nick) not in self.passwords:
                self._log.info("login as {nick} refused", nick=nick)
                raise ChatError("bad-login", "wrong nick or password")
            self._log.info("login as {nick} accepted", nick=nick)

        return d.addCallback(checked)

    def isAdmin(self, member: Member) -> bool:
        return member.authenticated is not None and member.authenticated in self.admins

    def _spend(self, member: Member) -> None:
        """
        Charge one request to C{member}'s flood budget. Nothing is refused
        here: front-ends ask L{floodWait} before they hand a request over,
        and hold it as long as it says (see L{twisted_chat.core.limits}).
        """
        settings = self.settings
        rate = settings.floodRate
        if rate > 0:
            member.flood.spend(self.now(), rate, settings.floodBurst)

    def floodWait(self, member: Member) -> float:
        """
        Seconds C{member} has to wait before its next request: 0 while its
        flood budget (C{--flood-rate}, C{--flood-burst}) allows one now.
        """
        return member.floodWait()

    def disconnectFlooder(self, member: Member, waiting: int) -> None:
        """
        A front-end holds more than C{--flood-kick} requests of C{member}
        (C{waiting}) that wait for flood control: close its connection and
        take it out of the chat (the others see it leave as C{flooding}).
        """
        if member.gone:
            return
        self._log.warn(
            "disconnecting {nick} from {peer}: flooding ({waiting} requests waiting)",
            nick=member.nick,
            peer=member.peer,
            waiting=waiting,
        )
        self.stats.refused("flood")
        # (out of the chat first: the others see why it left, whatever the
        # connection's close reports)
        self._quit(member, "flooding")
        try:
            member.client.close("disconnected for flooding: more than %d requests waiting" % (self.settings.floodKick,))
        except Exception:
            self._log.failure("closing {nick} failed", nick=member.nick)

    def _requireLogin(self, member: Member) -> None:
        if self.requireAuth and member.authenticated is None:
            raise ChatError("auth-required", "log in first: /login NICK PASSWORD")

    def lookup(self, nick: str) -> Member | None:
        return self._nicks.get(nickKey(nick))

    def roomList(self) -> list[tuple[str, int]]:
        counts = dict(self.broker.remoteRooms())
        for r in self.rooms.values():
            counts[r.name] = counts.get(r.name, 0) + len(r.members)
        return sorted(counts.items())

    def _guestNick(self) -> str:
        while True:
            number = self.broker.nextGuest()
            if number is None:
                self._guest += 1
                number = self._guest
            nick = "guest-%d" % (number,)
            key = nickKey(nick)
            if key not in self._nicks and self.broker.remoteNick(key) is None:
                return nick

    def _checkNickFree(self, nick: str, member: Member | None, force: bool = False) -> None:
        key = nickKey(nick)
        other = self._nicks.get(key)
        if (other is not None and other is not member) or (
            not force and other is None and self.broker.remoteNick(key) is not None
        ):
            raise ChatError("nick-taken", "the nickname %s is taken" % (nick,))

    # Delivery

    def _send(self, member: Member, event: Event) -> None:
        """
        Hand one event to one member; a failing member is dropped, alone.
        """
        try:
            member.client.deliver(event)
        except Exception:
            self._log.failure("delivery to {nick} failed; dropping it", nick=member.nick)
            self._drop(member)

    def _broadcast(self, room: Room, event: Event) -> None:
        name = room.name
        failed: list[Member] | None = None
        if event.kind == "message":
            # The hot path: the members with a fast sink all at once.
            fan, groups, members = room.fanOut()
            if groups:
                fan.broadcast(groups, event)
        else:
            members = room.snapshot()
        for m in members:
            held = m._held
            if held is not None and name in held:
                held[name].append(event)
                continue
            floor = m._floor
            if floor is not None and name in floor:
                if event.kind == "message" and event.id <= floor[name]:  # type: ignore[attr-defined]
                    continue  # (in the history it got already)
                if event.kind in ("message", "epoch"):
                    # This node has caught up with that history.
                    self._dropFloor(m, name)
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
        self._quit(member, "disconnected")

    # Requests

    def _join(self, member: Member, name: str, since: tuple[str, int] | None) -> tuple[str, bool]:
        self._requireLogin(member)
        name = normalizeRoom(name)
        if name in member.rooms:
            member.current = name
            return name, False
        if len(member.rooms) >= self.settings.maxRoomsPerMember:
            raise ChatError(
                "too-many-rooms",
                "you are in %d rooms already (the limit): /part one first" % (len(member.rooms),),
            )
        room = self.rooms.get(name)
        fresh = room is None
        if room is None:
            # (with the topic and bans given on other nodes)
            room = Room(name)
            topic = self.broker.topicOf(name)
            if topic is not None:
                room.topic, room.topicBy = topic
            for key, host in self.broker.bansOf(name).items():
                self._addBan(room, key, host)
        if self._isBanned(room, member):
            raise ChatError("banned", "you are banned from %s" % (name,))
        if fresh:
            self.rooms[name] = room
            if not self.broker.remoteRoomCount(name):
                # (joining a room that has members on other nodes makes
                # nobody an operator)
                room.ops.add(member)
        room.add(member)
        member.rooms[name] = room
        member.current = name
        joined = Joined(name, member.nick, self.now())
        self.broker.joined(member, name, joined)
        if self._roomSize(room) > self.announceLimit:
            # A big room: only the joiner hears of it (see announceLimit).
            self._send(member, joined)
        else:
            self._broadcast(room, joined)
        self._send(member, self._presence(name, room))
        if room.topic:
            self._send(member, TopicChanged(name, room.topic, room.topicBy, self.now()))
        self._fetchHistory(member, name, since, fresh)
        return name, True

    def _fetchHistory(self, member: Member, name: str, since: tuple[str, int] | None, fresh: bool = False) -> None:
        """
        Send C{member} the history of C{name} it needs after joining, holding
        back live events of that room until the history has been sent, so
        nothing arrives twice or out of order. The history of a member that
        brought the room to this node (C{fresh}) tells the broker where the
        room stands (see L{IBroker.readUpTo}).
        """
        held: list[Event] = []
        if member._held is None:
            member._held = {}
        member._held[name] = held
        room = member.rooms.get(name)
        if room is not None:
            room._fan = None  # (held: off the fast path)
        store = self.store

        def fetched(result: tuple[list[Message], bool | None, str]) -> None:
            messages, recovered, reason = result
            holds = member._held
            if member.gone or holds is None or holds.get(name) is not held:
                return
            del holds[name]
            if not holds:
                member._held = None
            room = member.rooms.get(name)
            if room is not None:
                room._fan = None  # (back on the fast path)
            if messages and held:
                messages = _withHeldBefore(messages, held)
            self._send(member, History(name, store.epoch, messages, recovered, reason, onJoin=True))
            if fresh and reason != "unavailable":
                if messages:
                    if messages[-1].epoch == store.epoch:
                        self.broker.readUpTo(name, messages[-1].id)
                elif recovered is True and since is not None:
                    self.broker.readUpTo(name, since[1])
                elif self.settings.historySize > 0:
                    self.broker.readUpTo(name, 0)
            last = messages[-1].id if messages else 0
            for ev in held:
                if member.gone:
                    return
                if isinstance(ev, Message) and ev.id <= last:
                    continue
                self._send(member, ev)
            delivered = self.broker.deliveredUpTo(name) if messages and messages[-1].epoch == store.epoch else None
            if delivered is not None and delivered < last and room is not None and not member.gone:
                # The history holds messages this node has not delivered
                # yet: they are on their way, and must not come twice.
                if member._floor is None:
                    member._floor = {}
                member._floor[name] = last
                room._fan = None  # (off the fast path until it has caught up)

        def recent(reason: str, recovered: bool | None) -> Deferred[tuple[list[Message], bool | None, str]]:
            return store.recent(name, self.settings.historySize).addCallback(
                lambda msgs: (msgs, recovered, reason)
            )

        if since is None:
            d = recent("", None)
        else:
            epoch, afterId = since

            def resumed(msgs: list[Message] | None) -> object:
                if msgs is None:
                    why = "epoch" if epoch != store.epoch else "gap"
                    return recent(why, False)
                return (msgs, True, "")

            d = store.since(name, epoch, afterId, self.resumeLimit).addCallback(resumed)

        def failed(f: Failure) -> None:
            self.logStoreFailure("history of {room} failed", f, room=name)
            fetched(([], False if since is not None else None, "unavailable"))

        d.addCallbacks(fetched, failed)

    def _dropFloor(self, member: Member, name: str) -> None:
        floor = member._floor
        if floor is not None and floor.pop(name, None) is not None:
            if not floor:
                member._floor = None
            room = member.rooms.get(name)
            if room is not None:
                room._fan = None  # (back on the fast path)

    def _part(self, member: Member, name: str, reason: str) -> str:
        room = member.rooms.pop(name)
        if member._held is not None:
            member._held.pop(name, None)
            if not member._held:
                member._held = None
        if member._floor is not None:
            member._floor.pop(name, None)
            if not member._floor:
                member._floor = None
        if member.current == name:
            member.current = next(reversed(member.rooms), None) if member.rooms else None
        parted = Parted(name, member.nick, reason, self.now())
        if self._roomSize(room) > self.announceLimit:
            self._send(member, parted)
        else:
            self._broadcast(room, parted)
        room.remove(member)
        if not room.members:
            del self.rooms[name]
        self.broker.parted(member, name, parted)
        return name

    def _roomSize(self, room: Room) -> int:
        return len(room.members) + self.broker.remoteRoomCount(room.name)

    def _checkText(self, text: object) -> str:
        if not isinstance(text, str):
            raise ChatError("bad-request", "text must be a string")
        if not text.strip():
            raise ChatError("empty-message", "empty message: nothing sent")
        limit = self.settings.maxTextLength
        if len(text) > limit:
            raise ChatError("too-long", "message too long (max %d characters): not sent" % (limit,))
        return text

    def _idempotent(self, member: Member, ref: object, make: Callable[[], Deferred[Any]]) -> Deferred[Any]:
        """
        Run C{make} unless this nick already sent C{ref} within the window;
        then answer with that first message (once it is stored) instead.
        """
        if ref is None:
            return make()
        key = (nickKey(member.nick), str(ref))
        now = self.now()
        refs = self._refs
        while refs:
            oldest = next(iter(refs.values()))
            if (oldest[1] if type(oldest) is tuple else oldest.time) > now - self.refWindow and len(refs) < 100000:
                break
            refs.popitem(last=False)
        entry = refs.get(key)
        if entry is not None:
            return succeed(_unpackRef(entry)) if type(entry) is tuple else entry.result()
        entry = refs[key] = _Ref(now, None)
        d = make()

        def stored(msg: Any) -> Any:
            entry.stored(msg)
            if refs.get(key) is entry:
                refs[key] = _packRef(entry.time, msg)
            return msg

        def failed(f: Failure) -> Failure:
            if refs.get(key) is entry:
                del refs[key]
            entry.failed(f)
            return f

        return d.addCallbacks(stored, failed)

    def _notStored(self, f: Failure) -> Failure:
        """
        A message could not be stored: count it (the sender is answered,
        and the failure logged, by its front-end).
        """
        if not f.check(ChatError):
            self.stats.storeFailed()
        return f

    def logStoreFailure(self, format: str, failure: Failure, **fields: Any) -> None:
        """
        Log a failure of the store met by C{format} (a log format with
        C{fields}): L{StoreUnavailable} as one warning line (repeats
        summed up, see L{FailureLog}), anything else with its traceback.
        Front-ends log the messages they could not store through this.
        """
        self._storeFailures.failure(format, failure, **fields)

    def _say(self, member: Member, name: str, text: str, action: bool, ref: object = None) -> Deferred[Message]:
        self._requireLogin(member)
        text = self._checkText(text)

        def make() -> Deferred[Message]:
            # (the store gives it its id as it stores it)
            msg = Message(name, 0, self.store.epoch, member.nick, text, self.now(), action)
            d = self.store.append(msg, None if ref is None else str(ref))

            def stored(final: Message) -> Any:
                self.stats.messageStored("room", self.now() - msg.time)
                if self.logMessages:
                    self._log.info("{nick} in {room}: {text}", nick=final.sender, room=name, text=final.text)
                return self.broker.deliverMessage(final)

            return d.addCallbacks(stored, self._notStored)

        return self._idempotent(member, ref, make)

    def deliverMessage(self, msg: Message) -> None:
        """
        Hand a stored room message to this node's members of its room.
        """
        room = self.rooms.get(msg.room)
        if room is not None:
            recipients = len(room.members)
            self._broadcast(room, msg)
            self.stats.delivered(recipients)

    def _private(self, member: Member, nick: str, text: str, ref: object = None) -> Deferred[Private]:
        self._requireLogin(member)
        target = self.lookup(checkNick(nick)) if isinstance(nick, str) else None
        remote = self.broker.remoteNick(nickKey(nick)) if target is None else None
        if (
            target is None
            and remote is None
            and nickKey(nick) not in self._tokens
            and nickKey(nick) not in self.passwords
        ):
            raise ChatError("no-such-nick", "nobody called %s is online" % (nick,))
        # An owned (or registered) nick that is offline gets it later, in its
        # private history, when it comes back with its token or password.
        text = self._checkText(text)

        def make() -> Deferred[Private]:
            recipient = target.nick if target is not None else (remote or nick)
            # (the store gives it its id as it stores it)
            sent = Private(0, member.nick, recipient, text, self.now())
            d = self.broker.appendPrivate(sent, None if ref is None else str(ref))

            def stored(msg: Private) -> Private:
                self.stats.messageStored("private", self.now() - msg.time)
                if remote is not None:
                    # (the broker routes it to the recipient's node)
                    if not member.gone:
                        self._send(member, msg)
                    return msg
                if target is None:
                    if not member.gone:
                        self._send(member, msg)
                        self._send(member, Notice("%s is offline: they will see it when they come back" % (recipient,)))
                    return msg
                if not target.gone:
                    self._send(target, msg)
                if target is not member and not member.gone:
                    self._send(member, msg)
                return msg

            return d.addCallbacks(stored, self._notStored)

        return self._idempotent(member, ref, make)

    def _privateHistory(self, member: Member, afterId: int | None) -> None:
        if not member.owner:
            self._send(member, PrivateHistory([]))
            return

        def got(msgs: list[Private]) -> None:
            if not member.gone:
                self._send(member, PrivateHistory(msgs))

        def failed(f: Failure) -> None:
            self.logStoreFailure("private history of {nick} failed", f, nick=member.nick)
            if not member.gone:
                self._send(member, PrivateHistory([]))

        self.store.privateFor(member.nick, afterId, self.settings.historySize).addCallbacks(got, failed)

    def _setNick(self, member: Member, nick: str, registeredOk: bool = False) -> str:
        nick = checkNick(nick)
        self._checkNickFree(nick, member)
        if not registeredOk and nickKey(nick) in self.passwords and member.authenticated != nickKey(nick):
            raise ChatError("nick-registered", "%s is registered: /login %s PASSWORD" % (nick, nick))
        old = member.nick
        if old == nick:
            return nick
        del self._nicks[nickKey(old)]
        if nickKey(nick) != nickKey(old):
            # Ownership was proven for the old nick, not for this one.
            member.owner = False
        member.nick = nick
        for room in member.rooms.values():
            room.presence = None
        self._nicks[nickKey(nick)] = member
        now = self.now()
        # One notice per member that shares a room, listing the shared rooms.
        shared: dict[Member, list[str]] = {member: list(member.rooms)}
        for name, room in member.rooms.items():
            for m in room.members:
                if m is not member:
                    shared.setdefault(m, []).append(name)
        for m, rooms in shared.items():
            self._send(m, NickChanged(old, nick, tuple(rooms), now))
        self.broker.nickChanged(member, old, now)
        self._log.info("{old} is now known as {new}", old=old, new=nick)
        return nick

    def _who(self, member: Member, name: str) -> None:
        room = self.rooms.get(name)
        if room is not None:
            self._send(member, self._presence(name, room))
        else:
            limit = self.announceLimit
            remote = self.broker.remoteRoomNicks(name, limit)
            count = self.broker.remoteRoomCount(name)
            self._send(member, Presence(name, _sortedNicks(remote), total=count if count > limit else None))

    def _presence(self, name: str, room: Room) -> Presence:
        """
        Who is in C{room}: everyone, sorted; in a room bigger than
        C{announceLimit}, the first C{announceLimit} to have joined (sorted)
        and the total, so that a member list never costs O(members) per join.
        """
        members = room.members
        limit = self.announceLimit
        cached = room.presence
        if cached is None or cached[0] != limit:
            # (kept until the first `limit` members change: see Room.add)
            cached = room.presence = (limit, _sortedNicks(m.nick for m in islice(members, limit)))
        nicks = list(cached[1])
        count = self.broker.remoteRoomCount(name)
        shown = len(nicks)
        if count and shown < limit:
            nicks = _sortedNicks(nicks + self.broker.remoteRoomNicks(name, limit - shown))
        total = len(members) + count
        if total <= limit:
            return Presence(name, nicks)
        return Presence(name, nicks, total=total)

    def _history(self, member: Member, name: str, limit: int, before: int | None) -> None:
        limit = max(0, min(int(limit), max(self.settings.historySize, 200)))

        def got(msgs: list[Message]) -> None:
            if not member.gone:
                self._send(member, History(name, self.store.epoch, msgs))

        def failed(f: Failure) -> None:
            self.logStoreFailure("history of {room} failed", f, room=name)
            if not member.gone:
                self._send(member, History(name, self.store.epoch, [], None, "unavailable"))

        self.store.recent(name, limit, before).addCallbacks(got, failed)

    def _quit(self, member: Member, reason: str) -> None:
        if member.gone:
            return
        # Gone before the leave notices go out: a member whose delivery of
        # one of them fails is not closed and dropped a second time.
        member.gone = True
        self.stats.disconnected(reason)
        for name in list(member.rooms):
            self._part(member, name, reason)
        member._held = member._floor = None
        self.members.discard(member)
        if self._nicks.get(nickKey(member.nick)) is member:
            del self._nicks[nickKey(member.nick)]
            self.broker.memberGone(member)
        self._log.info("{nick} disconnected ({reason})", nick=member.nick, reason=reason)
        if self._allGone is not None and not self.members:
            d, self._allGone = self._allGone, None
            d.callback(None)

    # Authentication and moderation

    def _login(self, member: Member, nick: str, password: str) -> Deferred[str]:
        checkNick(nick)
        if not self.passwords:
            raise ChatError("no-auth", "this server has no registered nicks")

        def accepted(_: None) -> str:
            if member.gone:
                return nick
            other = self.lookup(nick)
            if other is not None and other is not member:
                if other.authenticated == nickKey(nick):
                    raise ChatError("nick-taken", "%s is logged in on another connection" % (nick,))
                # Someone without the password holds a registered nick (it
                # was registered while they were on): they become a guest.
                self._setNick(other, self._guestNick())
            self._setNick(member, nick, registeredOk=True)
            member.authenticated = nickKey(nick)
            member.owner = True
            return member.nick

        return self._checkPassword(nick, password).addCallback(accepted)

    def _isBanned(self, room: Room, member: Member) -> bool:
        return nickKey(member.nick) in room.bans or (member.host != "" and member.host in room.bans)

    def _checkOp(self, member: Member, room: Room) -> None:
        if member not in room.ops and not self.isAdmin(member):
            raise ChatError("not-allowed", "only operators of %s can do that" % (room.name,))

    def _roomFor(self, member: Member, name: str) -> Room:
        room = self.rooms.get(name)
        if room is None or member not in room.members:
            raise ChatError("not-in-room", "you are not in %s" % (name,))
        return room

    def _kick(self, member: Member, name: str, nick: str, reason: str) -> str:
        room = self._roomFor(member, name)
        self._checkOp(member, room)
        target = self.lookup(checkNick(nick))
        why = "kicked by %s" % (member.nick,) + (": " + reason if reason else "")
        if target is None and self.broker.kickRemote(member, name, nick, why):
            self._log.info("{op} kicked {nick} from {room} (on another node)", op=member.nick, nick=nick, room=name)
            return self.broker.remoteNick(nickKey(nick)) or nick
        if target is None or target not in room.members:
            raise ChatError("no-such-nick", "%s is not in %s" % (nick, name))
        self._log.info("{op} kicked {nick} from {room}", op=member.nick, nick=target.nick, room=name)
        self._part(target, name, why)
        return target.nick

    def _ban(self, member: Member, name: str, target: str, reason: str) -> str:
        room = self._roomFor(member, name)
        self._checkOp(member, room)
        if not isinstance(target, str) or not target.strip():
            raise ChatError("bad-request", "ban whom? a nick or an address")
        target = target.strip()
        other = self.lookup(target) if _NICKLIKE(target) else None
        host = other.host if other is not None else ""
        self._addBan(room, target.lower(), host)
        self._log.info("{op} banned {target} from {room}", op=member.nick, target=target, room=name)
        why = "banned by %s" % (member.nick,) + (": " + reason if reason else "")
        self._partBanned(room, why, spare=member)
        self.broker.banned(name, target.lower(), host, why)
        return target

    def _addBan(self, room: Room, key: str, host: str) -> None:
        """
        Ban C{key} (a nick key or an address) from C{room}, and with a nick
        the address it came from, unless that address was banned already.
        """
        if host and host not in room.bans:
            room.banHosts[key] = host
        room.bans.add(key)
        if host:
            room.bans.add(host)

    def _partBanned(self, room: Room, why: str, spare: Member | None = None) -> None:
        for m in room.snapshot():
            if m is not spare and self._isBanned(room, m):
                self._part(m, room.name, why)

    def _unban(self, member: Member, name: str, target: str) -> str:
        room = self._roomFor(member, name)
        self._checkOp(member, room)
        key = target.strip().lower() if isinstance(target, str) else ""
        if key not in room.bans:
            raise ChatError("bad-request", "%s is not banned from %s" % (target, name))
        self._removeBan(room, key)
        self.broker.unbanned(name, key)
        return key

    def _removeBan(self, room: Room, key: str) -> None:
        room.bans.discard(key)
        host = room.banHosts.pop(key, None)
        if host is not None:
            room.bans.discard(host)

    def _setTopic(self, member: Member, name: str, topic: str) -> None:
        room = self._roomFor(member, name)
        self._checkOp(member, room)
        topic = topic.strip() if isinstance(topic, str) else ""
        if len(topic) > 300:
            raise ChatError("too-long", "topics are at most 300 characters")
        room.topic = topic
        room.topicBy = member.nick
        event = TopicChanged(name, topic, member.nick, self.now())
        self._broadcast(room, event)
        self.broker.topicChanged(event)

    def _giveOp(self, member: Member, name: str, nick: str) -> str:
        room = self._roomFor(member, name)
        self._checkOp(member, room)
        target = self.lookup(checkNick(nick))
        if target is None and self.broker.opRemote(name, nick):
            return self.broker.remoteNick(nickKey(nick)) or nick
        if target is None or target not in room.members:
            raise ChatError("no-such-nick", "%s is not in %s" % (nick, name))
        self.remoteOp(name, target.nick)
        return target.nick

    # What happened on other nodes (called by the broker)

    def remoteJoined(self, name: str, nick: str, time: float) -> None:
        room = self.rooms.get(name)
        if room is not None and self._roomSize(room) <= self.announceLimit:
            self._broadcast(room, Joined(name, nick, time))

    def remoteParted(self, name: str, nick: str, reason: str, time: float) -> None:
        room = self.rooms.get(name)
        if room is not None and self._roomSize(room) < self.announceLimit:
            self._broadcast(room, Parted(name, nick, reason, time))

    def epochChanged(self, previous: str, epoch: str) -> None:
        """
        The shared store lost its messages and started epoch C{epoch}
        (ids start again at 1): every member is told, in every room.
        """
        self._log.warn(
            "the message store was reset: epoch {previous} is gone, new epoch {epoch}", previous=previous, epoch=epoch
        )
        now = self.now()
        for name, room in list(self.rooms.items()):
            self._broadcast(room, EpochChanged(name, epoch, previous, now))

    def remoteNickChanged(self, old: str, new: str, rooms: Iterable[str], time: float) -> None:
        shared: dict[Member, list[str]] = {}
        for name in rooms:
            room = self.rooms.get(name)
            if room is not None:
                for m in room.members:
                    shared.setdefault(m, []).append(name)
        for m, names in shared.items():
            self._send(m, NickChanged(old, new, tuple(names), time))

    def remoteTopic(self, event: TopicChanged) -> None:
        room = self.rooms.get(event.room)
        if room is not None:
            room.topic, room.topicBy = event.topic, event.by
            self._broadcast(room, event)

    def remotePrivate(self, msg: Private) -> None:
        target = self.lookup(msg.recipient)
        if target is not None and not target.gone:
            self._send(target, msg)

    def remoteBan(self, name: str, key: str, host: str, why: str) -> None:
        room = self.rooms.get(name)
        if room is None:
            return
        if not host:
            # (a nick banned on another node: its address, if it is here)
            other = self.lookup(key) if _NICKLIKE(key) else None
            host = other.host if other is not None else ""
        self._addBan(room, key, host)
        self._partBanned(room, why)

    def remoteUnban(self, name: str, key: str) -> None:
        room = self.rooms.get(name)
        if room is not None:
            self._removeBan(room, key)

    def remoteOp(self, name: str, nick: str) -> None:
        target = self.lookup(nick)
        room = self.rooms.get(name)
        if target is not None and room is not None and target in room.members:
            room.ops.add(target)
            self._send(target, Notice("you are now an operator of %s" % (name,)))

    def remoteKick(self, name: str, nick: str, why: str) -> None:
        target = self.lookup(nick)
        if target is not None and name in target.rooms:
            self._log.info("{nick} kicked from {room} by another node", nick=target.nick, room=name)
            self._part(target, name, why)

    def replaced(self, key: str) -> None:
        """
        The owner of nick C{key} connected to another node: this node's
        stale connection of that nick gives way.
        """
        member = self._nicks.get(key)
        if member is not None:
            self._giveWay(member, "{nick} reconnected to another node: closing this connection")

    def _giveWay(self, member: Member, why: str) -> None:
        """
        Close C{member}'s stale connection: its nick's owner connected anew.
        """
        self._log.info(why, nick=member.nick)
        try:
            member.client.close("replaced by a new connection of %s" % (member.nick,))
        except Exception:
            self._log.failure("closing the previous connection of {nick} failed", nick=member.nick)
        self._quit(member, "reconnected")

    def nickTaken(self, key: str) -> None:
        """
        Another node gave the nick with key C{key} to someone else at the
        same moment: the member here that has it becomes a guest.
        """
        member = self._nicks.get(key)
        if member is not None:
            self.nickCollision(member)

    def isRunning(self) -> bool:
        return bool(self.running)

    def localMembers(self) -> list[Member]:
        return list(self.members)

    def localRooms(self) -> list[str]:
        return list(self.rooms)

    def knownTokens(self, tokens: dict[str, str]) -> None:
        for key, tokenHash in tokens.items():
            self._tokens.setdefault(key, tokenHash)

    def nickCollision(self, member: Member) -> None:
        """
        Another node gave C{member}'s nick to someone else at the same
        moment: this member becomes a guest.
        """
        if member.gone:
            return
        old = member.nick
        self._setNick(member, self._guestNick(), registeredOk=True)
        self._send(member, Notice("%s was taken on another server at the same moment: you are now %s" % (old, member.nick)))

    # Server-wide

    def notice(self, text: str) -> None:
        """
        Send a server notice to every connected member.
        """
        ev = Notice(text)
        for m in list(self.members):
            self._send(m, ev)


__all__ = ["ChatService", "Member", "Room", "LOBBY"]
