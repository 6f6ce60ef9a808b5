"""
Tests for nick tokens and private history (L{twisted_chat.core.nicks},
through the service): a nick's owner takes it back with its token, and
gets its private messages again.
"""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from twisted_chat.core.errors import ChatError
from twisted_chat.core.events import PrivateHistory
from twisted_chat.stores.memory import MemoryStore
from twisted_chat.core.service import ChatService, Member

from tests.support.fakes import connect, fired, RecordingClient, say


# -- nick tokens and private history ---------------------------------------------


def test_firstNamedConnectGetsAToken(service: ChatService) -> None:
    """
    The first connection that asks for a nick gets a secret token and owns
    the nick; the store keeps only a hash of the token. A guest gets none.
    """
    alice, _ = connect(service, "alice")
    assert isinstance(alice.token, str) and len(alice.token) >= 16
    assert alice.owner is True
    stored = service.store.tokens()
    assert list(stored) == ["alice"]
    assert alice.token not in stored["alice"]
    guest, _ = connect(service)
    assert (guest.token, guest.owner) == (None, False)
    assert list(service.store.tokens()) == ["alice"]


@pytest.mark.parametrize(
    "token, owner",
    [("right", True), ("wrong", False), (None, False), ("", False), (12345, False)],
    ids=["right-token", "wrong-token", "no-token", "empty-token", "not-a-string"],
)
def test_laterConnectOwnsTheNickOnlyWithTheToken(service: ChatService, token: object, owner: bool) -> None:
    """
    A later connection with the nick (in any case) owns it only when it
    presents the token issued first; without it the nick may still be used
    while free, but it is not the owner. No new token is issued either way.
    """
    first, _ = connect(service, "alice")
    issued = first.token
    assert issued is not None
    stored = service.store.tokens()
    first.quit()
    presented = issued if token == "right" else token
    again = service.connect(RecordingClient(), nick="ALICE", peer="test", token=presented)  # type: ignore[arg-type]
    assert (again.nick, again.owner, again.token) == ("ALICE", owner, None)
    assert service.store.tokens() == stored


def test_tokensOutliveTheService(clock: Clock) -> None:
    """
    A service started over a store that holds a nick's token (a restarted
    daemon) knows it: the token owns the nick, another one does not, and
    no new token is issued.
    """
    store = MemoryStore()
    before = ChatService(store=store, clock=clock)
    before.startService()
    first, _ = connect(before, "alice")
    issued = first.token
    first.quit()
    fired(before.stopService())
    after = ChatService(store=store, clock=clock)
    after.startService()
    again = after.connect(RecordingClient(), nick="alice", peer="test", token=issued)
    assert (again.owner, again.token) == (True, None)
    again.quit()
    guesser = after.connect(RecordingClient(), nick="alice", peer="test", token="guess")
    assert (guesser.owner, guesser.token) == (False, None)
    guesser.quit()
    assert list(store.tokens()) == ["alice"]
    fired(after.stopService())


def privates(service: ChatService) -> tuple[Member, RecordingClient, str]:
    """
    alice, bob and carol exchange private messages 1-4; bob then leaves.
    Returns alice, her client, and bob's token.
    """
    alice, ca = connect(service, "alice")
    bob, _ = connect(service, "bob")
    carol, _ = connect(service, "carol")
    fired(alice.private("bob", "1 alice to bob"))
    fired(carol.private("Bob", "2 carol to bob"))
    fired(carol.private("alice", "3 carol to alice"))
    fired(bob.private("carol", "4 bob to carol"))
    token = bob.token
    assert token is not None
    bob.quit()
    ca.take()
    return alice, ca, token


def test_privateHistoryForTheOwner(service: ChatService) -> None:
    """
    The owner of a nick gets the private messages to and from that nick,
    and only those, oldest first; with C{afterId} only the later ones.
    """
    alice, ca, token = privates(service)
    bob = service.connect(RecordingClient(), nick="bob", peer="test", token=token)
    client = bob.client
    assert isinstance(client, RecordingClient)
    assert bob.owner is True
    bob.privateHistory()
    [history] = client.take()
    assert isinstance(history, PrivateHistory)
    assert [(p.id, p.sender, p.recipient, p.text) for p in history.messages] == [
        (1, "alice", "bob", "1 alice to bob"),
        (2, "carol", "bob", "2 carol to bob"),
        (4, "bob", "carol", "4 bob to carol"),
    ]
    bob.privateHistory(afterId=2)
    assert client.describe() == [("private-history", [4])]
    alice.privateHistory()
    assert ca.describe() == [("private-history", [1, 3])]


def test_privateHistoryOnlyForOwners(service: ChatService) -> None:
    """
    Private history is shown only to a connection that owns its nick: the
    same nick without the token, or with a wrong one, gets an empty list.
    """
    privates(service)
    for token in (None, "not-the-token"):
        bob = service.connect(RecordingClient(), nick="bob", peer="test", token=token)
        assert bob.owner is False
        client = bob.client
        assert isinstance(client, RecordingClient)
        bob.privateHistory()
        assert client.describe() == [("private-history", [])]
        bob.quit()


def test_nickChangeEndsOwnership(service: ChatService) -> None:
    """
    A connection that owns its nick keeps owning it through a change of
    case, but changing to another nick does not make it the owner of that
    one: it is not shown that nick's private history.
    """
    alice, ca, _ = privates(service)
    assert alice.owner is True
    alice.setNick("Alice")
    alice.privateHistory()
    assert ca.describe()[-1] == ("private-history", [1, 3])
    alice.setNick("bob")
    ca.take()
    alice.privateHistory()
    assert ca.describe() == [("private-history", [])]



def test_privateToAnOwnedNickWhileAway(service: ChatService) -> None:
    """
    A private message to a nick that has an owner but is offline is stored
    (the sender sees it echoed, and is told the recipient is away); the
    owner gets it in its private history when it comes back with its
    token. A nick nobody ever owned is still refused.
    """
    alice, ca, token = privates(service)
    sent = fired(alice.private("bob", "5 while you were away"))
    assert (sent.sender, sent.recipient, sent.id) == ("alice", "bob", 5)
    events = ca.take()
    assert [e.kind for e in events] == ["private", "notice"]
    assert "bob is offline" in events[1].text  # type: ignore[attr-defined]
    bob = service.connect(RecordingClient(), nick="bob", peer="test", token=token)
    client = bob.client
    assert isinstance(client, RecordingClient)
    bob.privateHistory(afterId=4)
    assert client.describe() == [("private-history", [5])]
    with pytest.raises(ChatError) as e:
        alice.private("nobody-ever", "hello?")
    assert e.value.code == "no-such-nick"


def test_ownerConnectsFromSeveralDevices(service: ChatService) -> None:
    """
    The owner of a nick may connect again with its token while connected
    (a second device, or after a drop the server has not noticed yet):
    each connection gets the room's messages and the nick's private
    messages; the room sees the nick once (no second join, one name in
    its presence) and sees it leave only with its last connection. Without
    the token, the nick is still taken.
    """
    alice, ca = connect(service, "alice")
    bob, cb = connect(service, "bob")
    for m in (alice, bob):
        m.join("#lobby")
    token = alice.token
    assert token is not None
    ca.take()
    cb.take()
    with pytest.raises(ChatError) as e:
        service.connect(RecordingClient(), nick="alice", peer="test", token="wrong")
    assert e.value.code == "nick-taken"
    phone = RecordingClient()
    again = service.connect(phone, nick="alice", peer="test", token=token)
    assert again.owner is True and not alice.gone and again.token is None
    assert service.lookup("alice") is alice
    again.join("#lobby")
    assert [ev.kind for ev in phone.take()] == ["join", "presence", "history"]
    assert cb.take() == [] and ca.take() == []
    bob.who("#lobby")
    assert cb.describe() == [("presence", "#lobby", ["alice", "bob"])]
    assert service.roomList() == [("#lobby", 2)]
    say(bob, "hi alice")
    fired(bob.private("alice", "psst"))
    assert [d[0] for d in ca.describe()] == [d[0] for d in phone.describe()] == ["message", "private"]
    with pytest.raises(ChatError):
        again.setNick("alicia")
    cb.take()
    alice.quit()
    assert cb.take() == []
    assert service.lookup("alice") is again
    again.quit()
    assert [(ev.kind, ev.nick) for ev in cb.take()] == [("part", "alice")]  # type: ignore[attr-defined]
    assert service.lookup("alice") is None


def test_ownerReplacesWhoeverUsesItsNickWithoutTheToken(service: ChatService) -> None:
    """
    A connection that uses an owned nick without its token (the nick was
    free) gives way when the owner comes back with the token; the room
    sees it leave ("reconnected").
    """
    first, _ = connect(service, "alice")
    token = first.token
    first.quit()
    squatter, cs = connect(service, "alice")
    assert squatter.owner is False
    bob, cb = connect(service, "bob")
    squatter.join("#lobby")
    bob.join("#lobby")
    cb.take()
    owner = service.connect(RecordingClient(), nick="alice", peer="test", token=token)
    assert owner.owner is True and squatter.gone
    assert cs.closed == ["replaced by a new connection of alice"]
    assert service.lookup("alice") is owner
    assert ("part", "#lobby", "alice", "reconnected") in [
        (ev.kind, ev.room, ev.nick, ev.reason) for ev in cb.take() if ev.kind == "part"  # type: ignore[attr-defined]
    ]


def test_serviceIsWhatABrokerSees(service: ChatService) -> None:
    """
    A broker is given the service as L{IClusterEvents}, and nothing else of it.
    """
    from zope.interface.verify import verifyObject

    from twisted_chat.core.interfaces import IClusterEvents

    events = service.broker.events  # type: ignore[attr-defined]
    assert verifyObject(IClusterEvents, events)
    assert events.localRooms() == [] and events.now() == service.now()
