# -*- test-case-name: tests.core.test_nicks,tests.core.test_service -*-
"""
Nicknames: who is connected under which nick on this node, guest nicks,
nick changes, and who owns a nick (its owner token, or its password with
C{--auth}); a nick's owner may be connected several times, here and on
other nodes (one person, several devices), and takes the nick from
anyone else who has it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import TYPE_CHECKING, Any, Iterable, cast

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from twisted_chat.core.errors import ChatError
from twisted_chat.core.events import NickChanged, Notice
from twisted_chat.core.interfaces import IChatClient
from twisted_chat.core.member import Member, MemberInfo
from twisted_chat.core.names import checkNick, nickKey

if TYPE_CHECKING:
    from twisted_chat.core.parts import Host

#: what a password check compares with for an unknown nick (the same work)
_DUMMY_HASH = "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="


def hashToken(token: str) -> str:
    """
    How an owner token is kept: its SHA-256, in hex.
    """
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class Nicks:
    """
    The nicks of this node's members, and the owners of nicks.
    """

    _log = Logger()

    def __init__(
        self, host: Host, passwords: dict[str, str] | None = None, admins: Iterable[str] = (), requireAuth: bool = False
    ) -> None:
        self.host = host
        #: only registered nicks may chat (--require-auth)
        self.requireAuth = requireAuth
        #: nick key -> the member of this node that has it (its first
        #: connection, when its owner is connected several times)
        self.byKey: dict[str, Member] = {}
        #: nick key -> every connection of a nick connected several times
        #: (its owner's devices), in connecting order
        self.devices: dict[str, list[Member]] = {}
        #: nick key -> hash of its owner token
        self.tokens: dict[str, str] = {}
        #: registered nicks (nick key -> password hash), from --auth
        self.passwords: dict[str, str] = dict(passwords or {})
        #: nick keys of the server's admins
        self.admins = {nickKey(a) for a in admins}
        self._guest = 0

    def lookup(self, nick: str) -> Member | None:
        return self.byKey.get(nickKey(nick))

    def connectionsOf(self, key: str) -> list[Member]:
        """
        The connections of this node that have the nick with key C{key}
        (several for an owned nick used from several devices).
        """
        devices = self.devices.get(key)
        if devices is not None:
            return list(devices)
        member = self.byKey.get(key)
        return [] if member is None else [member]

    def isAdmin(self, member: Member) -> bool:
        return member.authenticated is not None and member.authenticated in self.admins

    def info(self, nick: str) -> MemberInfo | None:
        """
        What is known of the member called C{nick} (see L{MemberInfo}), or
        None when nobody online has that nick (or it is no nick).
        """
        try:
            key = nickKey(checkNick(nick))
        except ChatError:
            return None
        member = self.byKey.get(key)
        if member is not None:
            return MemberInfo(
                member.nick,
                member.authenticated,
                member.away,
                tuple(member.rooms),
                self.isAdmin(member),
                getattr(member.client, "kind", ""),
                True,
            )
        remote = self.host.broker.remoteNick(key)
        if remote is not None:
            return MemberInfo(remote, None, "", (), False, "", False)
        return None

    def requireLogin(self, member: Member) -> None:
        """
        Refuse what C{member} asks unless it logged in, on a server for
        registered nicks only.
        """
        if self.requireAuth and member.authenticated is None:
            raise ChatError("auth-required", "log in first: /login NICK PASSWORD")

    def owned(self, key: str) -> bool:
        """
        Whether the nick with key C{key} has an owner (a token, or a
        password), who will see what is sent to it while away.
        """
        return key in self.tokens or key in self.passwords

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
        share = False
        device: Member | None = None
        if nick is not None:
            key = nickKey(checkNick(nick))
            known = self.tokens.get(key)
            other = self.byKey.get(key)
            validToken = (
                known is not None and isinstance(token, str) and hmac.compare_digest(hashToken(token), known)
            )
            if other is None and (validToken or authenticated):
                # The owner connects here: if another node has the nick
                # (another device of theirs there, or a dead node's stale
                # connection, also one this node has not heard of yet),
                # both have it; one that has it for someone else gives
                # way (see sharedElsewhere).
                share = True
                nick = self.host.broker.remoteNick(key) or nick
            elif other is not None and (
                (validToken and other.owner) or (authenticated and other.authenticated == key)
            ):
                # The nick's owner connects again while connected (a second
                # device, or after a drop the server has not noticed yet):
                # one more connection of the nick.
                device = other
            elif other is not None and validToken:
                # The nick's owner is back while someone without its token
                # uses it: that connection gives way to it.
                self._giveWay(other, "{nick} reconnected: closing its previous connection")
            if device is None:
                self.checkFree(nick, None, share)
            if key in self.passwords and not authenticated:
                raise ChatError("nick-registered", "%s is registered: log in with its password" % (nick,))
            known = self.tokens.get(key)
            if known is None:
                issued = secrets.token_urlsafe(18)
                self.tokens[key] = known = hashToken(issued)
                self.host.store.saveToken(key, known).addErrback(
                    lambda f: self.host.logStoreFailure("saving the token of {nick} failed", f, nick=nick)
                )
                owner = True
            elif isinstance(token, str) and hmac.compare_digest(hashToken(token), known):
                owner = True
        else:
            nick = self.guestNick()
        m = Member(self.host, client, nick, peer, host)
        if authenticated:
            m.authenticated = nickKey(nick)
            owner = True
        m.owner = owner
        m.token = issued
        self.host.members.add(m)
        if device is not None:
            m.owner = True
            m.authenticated = device.authenticated if authenticated else m.authenticated
            self.devices.setdefault(nickKey(nick), [device]).append(m)
            nick = device.nick
            m.nick = nick
        else:
            self.byKey[nickKey(nick)] = m
            self.host.broker.memberAdded(m, share)
        self.host.connectionLog.connected(nick, peer, getattr(client, "kind", "?"))
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
        d = self.checkPassword(nick, password)
        return d.addCallback(lambda _: self.connect(client, nick, peer, token, host, authenticated=True))

    def checkLogin(self, nick: str, password: str) -> Deferred[None]:
        """
        Check that C{password} is the password of the registered C{nick},
        without taking the nick: fires with None, or fails with
        L{ChatError} C{bad-login}; refused at once (C{no-auth}) on a server
        without registered nicks.
        """
        checkNick(nick)
        if not self.passwords:
            raise ChatError("no-auth", "this server has no registered nicks")
        return self.checkPassword(nick, password)

    def checkPassword(self, nick: str, password: object) -> Deferred[None]:
        from twisted.internet.threads import deferToThreadPool

        from twisted_chat.core.auth import verifyPassword

        encoded = self.passwords.get(nickKey(nick))
        if encoded is None or not isinstance(password, str):
            # The same work for an unknown nick, so timing tells nothing.
            encoded = _DUMMY_HASH
        # (Any: the service's clock is the reactor, and the password is
        # checked in its thread pool; IReactorTime does not say it has one)
        reactor = cast(Any, self.host.clock)
        d = deferToThreadPool(reactor, reactor.getThreadPool(), verifyPassword, str(password), encoded)

        def checked(ok: bool) -> None:
            if not ok or nickKey(nick) not in self.passwords:
                self._log.info("login as {nick} refused", nick=nick)
                raise ChatError("bad-login", "wrong nick or password")
            self._log.info("login as {nick} accepted", nick=nick)

        return d.addCallback(checked)

    def guestNick(self) -> str:
        while True:
            number = self.host.broker.nextGuest()
            if number is None:
                self._guest += 1
                number = self._guest
            nick = "guest-%d" % (number,)
            key = nickKey(nick)
            if key not in self.byKey and self.host.broker.remoteNick(key) is None:
                return nick

    def checkFree(self, nick: str, member: Member | None, force: bool = False) -> None:
        key = nickKey(nick)
        other = self.byKey.get(key)
        if (other is not None and other is not member) or (
            not force and other is None and self.host.broker.remoteNick(key) is not None
        ):
            raise ChatError("nick-taken", "the nickname %s is taken" % (nick,))

    def setNick(self, member: Member, nick: str, registeredOk: bool = False, lost: bool = False) -> str:
        """
        C{member} is called C{nick} from now on (C{registeredOk}: even a
        registered nick; C{lost}: another node has its nick now, see
        L{collision}).
        """
        nick = checkNick(nick)
        if nick != member.nick and not lost and (
            nickKey(member.nick) in self.devices or self.host.broker.remoteNick(nickKey(member.nick)) is not None
        ):
            raise ChatError("not-allowed", "%s is connected more than once: it keeps its nick" % (member.nick,))
        self.checkFree(nick, member)
        if not registeredOk and nickKey(nick) in self.passwords and member.authenticated != nickKey(nick):
            raise ChatError("nick-registered", "%s is registered: /login %s PASSWORD" % (nick, nick))
        old = member.nick
        if old == nick:
            return nick
        del self.byKey[nickKey(old)]
        if nickKey(nick) != nickKey(old):
            # Ownership was proven for the old nick, not for this one.
            member.owner = False
        member.nick = nick
        for room in member.rooms.values():
            room.presence = None
        self.byKey[nickKey(nick)] = member
        now = self.host.now()
        # One notice per member that shares a room, listing the shared rooms.
        shared: dict[Member, list[str]] = {member: list(member.rooms)}
        for name, room in member.rooms.items():
            for m in room.members:
                if m is not member:
                    shared.setdefault(m, []).append(name)
        self.host.notices.noticesFirst(member)
        for m, rooms in shared.items():
            self.host.send(m, NickChanged(old, nick, tuple(rooms), now))
        self.host.broker.nickChanged(member, old, now)
        self._log.info("{old} is now known as {new}", old=old, new=nick)
        return nick

    def login(self, member: Member, nick: str, password: str) -> Deferred[str]:
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
                self.setNick(other, self.guestNick())
            self.setNick(member, nick, registeredOk=True)
            member.authenticated = nickKey(nick)
            member.owner = True
            return member.nick

        return self.checkPassword(nick, password).addCallback(accepted)

    def replaced(self, key: str) -> None:
        """
        The owner of nick C{key} connected to another node: this node's
        stale connection of that nick gives way.
        """
        member = self.byKey.get(key)
        if member is not None:
            self._giveWay(member, "{nick} reconnected to another node: closing this connection")

    def sharedElsewhere(self, key: str) -> None:
        """
        The owner of nick C{key} is connected on another node too: this
        node's connection of that nick stays if it is the owner's (one
        person, several devices), else gives way.
        """
        member = self.byKey.get(key)
        if member is not None and not (member.owner or member.authenticated == key):
            self._giveWay(member, "{nick} connected on another node with its owner token: closing this connection")

    def _giveWay(self, member: Member, why: str) -> None:
        """
        Close C{member}'s stale connection: its nick's owner connected anew.
        """
        self._log.info(why, nick=member.nick)
        try:
            member.client.close("replaced by a new connection of %s" % (member.nick,))
        except Exception:
            self._log.failure("closing the previous connection of {nick} failed", nick=member.nick)
        self.host.quit(member, "reconnected")

    def nickTaken(self, key: str) -> None:
        """
        Another node gave the nick with key C{key} to someone else at the
        same moment: the member here that has it becomes a guest.
        """
        member = self.byKey.get(key)
        if member is not None:
            self.collision(member)

    def collision(self, member: Member) -> None:
        """
        Another node gave C{member}'s nick to someone else at the same
        moment: this member becomes a guest.
        """
        if member.gone:
            return
        old = member.nick
        self.setNick(member, self.guestNick(), registeredOk=True, lost=True)
        self.host.send(member, Notice("%s was taken on another server at the same moment: you are now %s" % (old, member.nick)))

    def forget(self, member: Member) -> bool:
        """
        C{member} is gone: its nick is free (if it still had it, and it was
        its last connection). Returns whether the nick is free now.
        """
        key = nickKey(member.nick)
        devices = self.devices.get(key)
        if devices is not None and member in devices:
            devices.remove(member)
            if self.byKey.get(key) is member:
                # (its next connection stands for the nick now)
                self.byKey[key] = devices[0]
            if len(devices) == 1:
                del self.devices[key]
            return False
        if self.byKey.get(key) is member:
            del self.byKey[key]
            return True
        return False

    def otherConnectionIn(self, member: Member, room: object) -> bool:
        """
        Whether another connection of C{member}'s nick is in C{room} (a
        L{Room}'s members): the room then sees the nick join or leave only
        with its first or last connection.
        """
        devices = self.devices.get(nickKey(member.nick))
        if devices is None:
            return False
        return any(d is not member and d in room.members for d in devices)  # type: ignore[attr-defined]
