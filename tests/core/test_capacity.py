"""
Capacity: in big rooms joins and leaves are told only to the member concerned, and
member lists are capped, once a room has more than C{announceLimit}
members (so that filling a room does not cost O(members²)).
"""

from __future__ import annotations

from twisted.internet.task import Clock

from twisted_chat.core.events import Joined, Parted, Presence
from twisted_chat.frontends.jsonmode import encodeEvent
from twisted_chat.stores.memory import MemoryStore
from twisted_chat.core.service import ChatService
from twisted_chat.frontends.textmode import TextSession

from tests.support.fakes import RecordingClient


def fill(limit: int, n: int) -> tuple[ChatService, list[RecordingClient]]:
    service = ChatService(store=MemoryStore(), clock=Clock(), pruneInterval=0)
    service.announceLimit = limit
    clients = []
    for i in range(n):
        c = RecordingClient()
        service.connect(c, nick="n%02d" % (i,)).join("#big")
        clients.append(c)
    return service, clients


def test_smallRoomAnnouncesEveryone() -> None:
    """
    Up to the limit, everyone hears every join and sees every member.
    """
    service, clients = fill(5, 5)
    assert [e.nick for e in clients[0].events if isinstance(e, Joined)] == ["n00", "n01", "n02", "n03", "n04"]
    presence = [e for e in clients[4].events if isinstance(e, Presence)][-1]
    assert presence.members == ["n00", "n01", "n02", "n03", "n04"] and presence.total is None


def test_bigRoomTellsOnlyTheJoinerAndCapsTheList() -> None:
    """
    Past the limit, a join is told to the joiner only, its member list
    names C{limit} members and gives the total; leaving is the same.
    """
    service, clients = fill(3, 6)
    assert [e.nick for e in clients[0].events if isinstance(e, Joined)] == ["n00", "n01", "n02"]
    assert [e.nick for e in clients[5].events if isinstance(e, Joined)] == ["n05"]
    presence = [e for e in clients[5].events if isinstance(e, Presence)][-1]
    assert presence.members == ["n00", "n01", "n02"] and presence.total == 6
    member = service.lookup("n04")
    assert member is not None
    member.part("#big")
    assert [e.nick for e in clients[4].events if isinstance(e, Parted)] == ["n04"]
    assert not any(isinstance(e, Parted) for c in clients[:4] + clients[5:] for e in c.events)
    # now 5 members, still over the limit of 3: /who is capped too
    service.lookup("n00").who("#big")  # type: ignore[union-attr]
    who = clients[0].events[-1]
    assert isinstance(who, Presence) and who.total == 5 and len(who.members) == 3


def test_presenceRendering() -> None:
    """
    Text mode says how many there are; json mode adds "total".
    """
    lines: list[str] = []

    class T(TextSession):
        def sendText(self, text: str) -> None:
            lines.append(text)

    T().deliverText(Presence("#big", ["a", "b"], total=5000))
    T().deliverText(Presence("#small", ["a", "b"]))
    assert lines == ["*** #big: 5000 members, among them: a, b", "*** #small: members: a, b"]
    assert b'"total":5000' in (encodeEvent(Presence("#big", ["a"], total=5000)) or b"")
    assert b"total" not in (encodeEvent(Presence("#small", ["a"])) or b"")


def test_listenBacklog() -> None:
    """
    Stream endpoints get a listen queue of 1024 unless they set one;
    others are left alone.
    """
    from twisted_chat.daemon.listeners import withBacklog

    assert withBacklog("tcp:9000") == "tcp:9000:backlog=1024"
    assert withBacklog("tcp:0:interface=127.0.0.1") == "tcp:0:interface=127.0.0.1:backlog=1024"
    assert withBacklog("ssl:443:privateKey=k.pem") == "ssl:443:privateKey=k.pem:backlog=1024"
    assert withBacklog("tcp:9000:backlog=10") == "tcp:9000:backlog=10"
    assert withBacklog("systemd:domain=INET:index=0") == "systemd:domain=INET:index=0"


def test_presenceFollowsMembershipAndNicks() -> None:
    """
    The member list is cached per room but always current: after joins,
    leaves and nick changes, in small and big rooms.
    """
    service, clients = fill(3, 2)
    service.lookup("n00").who("#big")  # type: ignore[union-attr]
    assert clients[0].events[-1].members == ["n00", "n01"]  # type: ignore[attr-defined]
    service.lookup("n01").setNick("a01")  # type: ignore[union-attr]
    service.lookup("n00").who("#big")  # type: ignore[union-attr]
    assert clients[0].events[-1].members == ["a01", "n00"]  # type: ignore[attr-defined]
    for i in range(2, 5):  # past the limit: the first three stay listed
        service.connect(RecordingClient(), nick="n%02d" % (i,)).join("#big")
    service.lookup("n00").who("#big")  # type: ignore[union-attr]
    last = clients[0].events[-1]
    assert last.members == ["a01", "n00", "n02"] and last.total == 5  # type: ignore[attr-defined]
    service.lookup("n00").part("#big")  # type: ignore[union-attr]
    service.lookup("a01").who("#big")  # type: ignore[union-attr]
    last = clients[1].events[-1]
    assert last.members == ["a01", "n02", "n03"] and last.total == 4  # type: ignore[attr-defined]


def test_storedRefsAreNotTrackedByTheGarbageCollector() -> None:
    """
    Once stored, a ref is kept as a tuple of plain values (untracked by the
    garbage collector after its first pass) and still answers a resend
    with an equal message.
    """
    import gc

    from twisted.internet.defer import Deferred

    service = ChatService(store=MemoryStore(), clock=Clock(), pruneInterval=0)
    member = service.connect(RecordingClient(), nick="alice")
    member.join("#room")
    got: list[object] = []
    d: Deferred[object] = member.say("hello", ref="r1")
    d.addCallback(got.append)
    entry = service.messages.refs._refs[("alice", "r1")]
    assert type(entry) is tuple
    gc.collect()
    assert not gc.is_tracked(entry)
    member.say("hello", ref="r1").addCallback(got.append)
    first, again = got
    assert (first.id, first.text, first.room) == (again.id, again.text, again.room)  # type: ignore[attr-defined]


def test_memberListFollowsJoinsAndLeaves() -> None:
    """
    The member list a joiner gets (and /who) is always the members sorted
    case-insensitively, the first C{limit} of them in a big room, however
    members came and went before.
    """
    import random

    rng = random.Random(16)
    service = ChatService(store=MemoryStore(), clock=Clock(), pruneInterval=0)
    service.announceLimit = 6
    inside: dict[str, RecordingClient] = {}
    order: list[str] = []
    for step in range(300):
        if inside and rng.random() < 0.45:
            nick = rng.choice(sorted(inside))
            service.lookup(nick).quit("bye")  # type: ignore[union-attr]
            del inside[nick]
            order.remove(nick)
            continue
        nick = rng.choice(["a", "B", "c", "D", "e"]) + "%d" % (step,)
        client = RecordingClient()
        service.connect(client, nick=nick).join("#r")
        inside[nick] = client
        order.append(nick)
        presence = [e for e in client.events if isinstance(e, Presence)][-1]
        assert presence.members == sorted(order[:6], key=str.lower)
        assert presence.total == (len(order) if len(order) > 6 else None)
