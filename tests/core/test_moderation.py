"""
Tests for room operators and server admins: who may kick, ban, unban, set
the topic and make operators, and what everyone sees when they do.

Room operations are driven through real line connections in memory (each
from an address of its own, so bans by address can be told apart); the
server admin, who has to log in with a password, and json mode are tested
against the real daemon.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import pytest
from twisted.internet.task import Clock

from twisted_chat.core.auth import hashPassword
from twisted_chat.frontends.line import LineChatFactory
from twisted_chat.core.service import ChatService
from twisted_chat.core.settings import Settings
from twisted_chat.stores.memory import MemoryStore

from tests.support.lines import MemoryLine, named, quiet
from tests.support.wsclients import receive, receiveUntil, webSocket

if TYPE_CHECKING:
    from tests.support.daemon import Daemon, LineClient


@pytest.fixture
def factory() -> LineChatFactory:
    clock = Clock()
    return LineChatFactory(ChatService(store=MemoryStore(), clock=clock, settings=Settings(idleTimeout=0)), clock=clock)


def user(factory: LineChatFactory, nick: str, host: str, *rooms: str) -> MemoryLine:
    """
    C{nick} connected from C{host}, in #lobby and then C{rooms} (the last
    one current); its output so far is read.
    """
    line = MemoryLine(factory, host)
    line.say("/nick " + nick)
    for room in rooms:
        line.say("/join " + room)
    line.lines()
    return line


def test_creatorIsOperator(factory: LineChatFactory) -> None:
    """
    Whoever creates a room (joins it first) is its operator; someone who
    joins later is not, and is refused, with nothing changed.
    """
    alice = user(factory, "alice", "10.0.0.1", "#dev")
    bob = user(factory, "bob", "10.0.0.2", "#dev")
    quiet(alice)
    assert bob.say("/kick alice") == ["!!! only operators of #dev can do that"]
    assert bob.say("/ban alice") == ["!!! only operators of #dev can do that"]
    assert bob.say("/topic mine now") == ["!!! only operators of #dev can do that"]
    assert bob.say("/op bob") == ["!!! only operators of #dev can do that"]
    assert alice.lines() == []
    assert alice.say("/who") == ["*** #dev: members: alice, bob"]


def test_kick(factory: LineChatFactory) -> None:
    """
    An operator's C{/kick NICK REASON} puts NICK out of the room: the
    target and everyone in the room see it leave, kicked by whom and why.
    The target stays connected, falls back to its previous room, and may
    come back (a kick is not a ban).
    """
    alice = user(factory, "alice", "10.0.0.1", "#dev")
    bob = user(factory, "bob", "10.0.0.2", "#dev")
    carol = user(factory, "carol", "10.0.0.3", "#dev")
    quiet(alice, bob)
    gone = "*** #dev: bob left (kicked by alice: spamming)"
    assert alice.say("/kick bob spamming") == [gone]
    assert bob.lines() == [gone]
    assert carol.lines() == [gone]
    assert bob.say("back in the lobby") == ["#lobby <bob> back in the lobby"]
    quiet(alice, carol)
    assert alice.say("/kick bob") == ["!!! bob is not in #dev"]
    assert bob.say("/join #dev")[0] == "*** #dev: bob joined"
    quiet(carol)
    assert alice.say("/kick bob")[-1] == "*** #dev: bob left (kicked by alice)"
    assert alice.say("/kick nobody") == ["!!! nobody is not in #dev"]


def test_banByNick(factory: LineChatFactory) -> None:
    """
    C{/ban NICK REASON} puts NICK out of the room and keeps them out when
    they try to come back; the others can still join.
    """
    alice = user(factory, "alice", "10.0.0.1", "#dev")
    bob = user(factory, "bob", "10.0.0.2", "#dev")
    quiet(alice)
    assert alice.say("/ban bob trolling") == [
        "*** #dev: bob left (banned by alice: trolling)",
        "*** #dev: bob is banned",
    ]
    assert bob.lines() == ["*** #dev: bob left (banned by alice: trolling)"]
    assert bob.say("/join #dev") == ["!!! you are banned from #dev"]
    carol = user(factory, "carol", "10.0.0.3")
    assert carol.say("/join #dev")[0] == "*** #dev: carol joined"


def test_banCoversTheAddress(factory: LineChatFactory) -> None:
    """
    Banning a nick also bans the address it connected from: a new nick
    from there is kept out too, while other addresses are not.
    """
    alice = user(factory, "alice", "10.0.0.1", "#dev")
    user(factory, "bob", "10.0.0.2", "#dev")
    alice.say("/ban bob")
    sneaky = user(factory, "bobby", "10.0.0.2")
    assert sneaky.say("/join #dev") == ["!!! you are banned from #dev"]
    other = user(factory, "dave", "10.0.0.4")
    assert other.say("/join #dev")[0] == "*** #dev: dave joined"


def test_banAnAddress(factory: LineChatFactory) -> None:
    """
    C{/ban ADDRESS} puts out and keeps out everyone connected from it,
    whatever their nick.
    """
    alice = user(factory, "alice", "10.0.0.1", "#dev")
    bob = user(factory, "bob", "10.0.0.2", "#dev")
    carol = user(factory, "carol", "10.0.0.3", "#dev")
    quiet(alice, bob)
    assert alice.say("/ban 10.0.0.3 go away") == [
        "*** #dev: carol left (banned by alice: go away)",
        "*** #dev: 10.0.0.3 is banned",
    ]
    assert bob.lines() == ["*** #dev: carol left (banned by alice: go away)"]
    assert carol.lines() == ["*** #dev: carol left (banned by alice: go away)"]
    assert carol.say("/nick carla") == ["*** you are now carla"]
    assert carol.say("/join #dev") == ["!!! you are banned from #dev"]
    quiet(bob)
    assert bob.say("/who") == ["*** #dev: members: alice, bob"]


def test_unban(factory: LineChatFactory) -> None:
    """
    C{/unban NICK} lets NICK back in, also from the address that was
    banned along with it; C{/unban ADDRESS} lifts an address ban. Unbanning
    someone who is not banned is refused.
    """
    alice = user(factory, "alice", "10.0.0.1", "#dev")
    bob = user(factory, "bob", "10.0.0.2", "#dev")
    carol = user(factory, "carol", "10.0.0.3", "#dev")
    alice.say("/ban bob")
    alice.say("/ban 10.0.0.3")
    quiet(alice, bob, carol)
    assert alice.say("/unban bob") == ["*** #dev: bob is no longer banned"]
    assert bob.say("/join #dev")[0] == "*** #dev: bob joined"
    assert carol.say("/join #dev") == ["!!! you are banned from #dev"]
    assert alice.say("/unban 10.0.0.3")[-1] == "*** #dev: 10.0.0.3 is no longer banned"
    assert carol.say("/join #dev")[0] == "*** #dev: carol joined"
    quiet(alice)
    assert alice.say("/unban bob") == ["!!! bob is not banned from #dev"]


def test_unbanNickKeepsAnAddressBannedOnItsOwn(factory: LineChatFactory) -> None:
    """
    An address banned by itself stays banned when a nick from it, banned
    later, is unbanned.
    """
    alice = user(factory, "alice", "10.0.0.1", "#dev")
    user(factory, "bob", "10.0.0.2", "#dev")
    alice.say("/ban 10.0.0.2")
    alice.say("/ban bob")
    alice.say("/unban bob")
    bobby = user(factory, "bobby", "10.0.0.2")
    assert bobby.say("/join #dev") == ["!!! you are banned from #dev"]


def test_topic(factory: LineChatFactory) -> None:
    """
    An operator sets the topic: the room sees it with who set it, later
    joiners get it on joining, C{/topic} shows it; C{/topic -} clears it.
    Topics are at most 300 characters.
    """
    alice = user(factory, "alice", "10.0.0.1", "#dev")
    bob = user(factory, "bob", "10.0.0.2", "#dev")
    quiet(alice)
    shown = "*** #dev: topic: release on Friday (set by alice)"
    assert alice.say("/topic release on Friday") == [shown]
    assert bob.lines() == [shown]
    assert bob.say("/topic") == [shown]
    carol = user(factory, "carol", "10.0.0.3")
    quiet(alice, bob)
    assert carol.say("/join #dev") == [
        "*** #dev: carol joined",
        "*** #dev: members: alice, bob, carol",
        shown,
    ]
    quiet(bob)
    assert bob.say("/topic my topic") == ["!!! only operators of #dev can do that"]
    quiet(alice)
    assert alice.say("/topic " + "x" * 301) == ["!!! topics are at most 300 characters"]
    assert carol.say("/topic") == [shown]
    quiet(bob, carol)
    assert alice.say("/topic -") == ["*** #dev: topic cleared by alice"]
    assert bob.lines() == ["*** #dev: topic cleared by alice"]
    assert carol.lines() == ["*** #dev: topic cleared by alice"]
    assert carol.say("/topic") == ["*** #dev: no topic"]


def test_giveOp(factory: LineChatFactory) -> None:
    """
    C{/op NICK} makes NICK an operator of the room, who is told so and can
    then kick; operators of one room have no say in another.
    """
    alice = user(factory, "alice", "10.0.0.1", "#dev")
    bob = user(factory, "bob", "10.0.0.2", "#dev")
    carol = user(factory, "carol", "10.0.0.3", "#dev")
    quiet(alice, bob)
    assert alice.say("/op bob") == ["*** #dev: bob is now an operator"]
    assert bob.lines() == ["*** notice: you are now an operator of #dev"]
    assert bob.say("/kick carol")[0] == "*** #dev: carol left (kicked by bob)"
    assert carol.lines() == ["*** #dev: carol left (kicked by bob)"]
    assert carol.say("/join #ops")[0] == "*** #ops: carol joined"
    bob.say("/join #ops")
    assert bob.say("/kick carol") == ["!!! only operators of #ops can do that"]


def test_operatorRightsBelongToTheConnection(factory: LineChatFactory) -> None:
    """
    Operator rights are not inherited by nick: an operator who leaves the
    room is not one on coming back, and someone who takes the nick of an
    operator who quit is not one either.
    """
    alice = user(factory, "alice", "10.0.0.1", "#dev")
    bob = user(factory, "bob", "10.0.0.2", "#dev")
    alice.say("/part #dev")
    alice.say("/join #dev")
    quiet(alice)
    assert alice.say("/kick bob") == ["!!! only operators of #dev can do that"]
    carol = user(factory, "carol", "10.0.0.3", "#dev")
    quiet(alice)
    assert alice.say("/op carol") == ["!!! only operators of #dev can do that"]
    bob.say("/quit")
    imposter = user(factory, "bob", "10.0.0.4", "#dev")
    assert carol.lines()[-1] == "*** #dev: bob joined"
    assert imposter.say("/kick carol") == ["!!! only operators of #dev can do that"]


def test_banIsForgottenWithTheRoom(factory: LineChatFactory) -> None:
    """
    A room is forgotten when its last member leaves, and with it its bans,
    topic and operators: whoever comes back first creates it afresh.
    """
    alice = user(factory, "alice", "10.0.0.1", "#dev")
    bob = user(factory, "bob", "10.0.0.2", "#dev")
    alice.say("/topic old topic")
    alice.say("/ban bob")
    alice.say("/part #dev")
    quiet(bob)
    assert bob.say("/join #dev") == [
        "*** #dev: bob joined",
        "*** #dev: members: bob",
    ]


# -- end to end: admins and json mode -------------------------------------------

TIMEOUT = 10.0


def passwordFile(folder: Path, **users: str) -> Path:
    """
    A password file in C{folder} registering C{nick=password} pairs.
    """
    path = folder / "users.txt"
    path.write_text("".join("%s:%s\n" % (nick, hashPassword(pw)) for nick, pw in users.items()))
    return path


@contextmanager
def jsonUser(daemon: Daemon, nick: str, rooms: list[str]) -> Iterator[Any]:
    """
    A json-mode WebSocket (the C{websockets} package's blocking client),
    welcomed as C{nick} in C{rooms}, with the history of the last one read.
    """
    with webSocket(daemon) as ws:
        ws.send(json.dumps({"type": "hello", "nick": nick, "rooms": rooms}))
        welcome = receive(ws)
        assert (welcome["type"], welcome["nick"]) == ("welcome", nick), welcome
        receiveUntil(ws, lambda o: o["type"] == "history" and o["room"] == rooms[-1])
        yield ws


@pytest.mark.e2e
def test_adminKicksAnywhereAndNoticesReachEveryone(
    startDaemon: Callable[..., Daemon], lineClients: Callable[..., LineClient], tmp_path: Path
) -> None:
    """
    A server admin, once logged in, can kick in a room it did not create,
    and its C{/notice} reaches every connection, on the line chat and in
    WebSocket json mode. Before logging in, it is refused like anyone.
    """
    users = passwordFile(tmp_path, root="hunter2-admin")
    daemon = startDaemon("--auth", str(users), "--admin", "root", "--store", "memory", web="tcp:0:interface=127.0.0.1")
    port = daemon.ports["line"]
    alice = named(lineClients(port), "alice")
    alice.send("/join #dev")
    alice.expect("*** #dev: members: alice")
    with jsonUser(daemon, "jason", ["#lobby", "#dev"]) as jason:
        alice.expect("*** #dev: jason joined")
        root = lineClients(port)
        root.welcome()
        root.send("/join #dev")
        root.expect(lambda line: line.startswith("*** #dev: members: "))
        root.send("/kick jason")
        root.expect("!!! only operators of #dev can do that")
        root.send("/notice hello")
        root.expect("!!! only server admins can send notices")
        root.send("/login root hunter2-admin")
        root.expect("*** you are logged in as root")
        root.send("/kick jason behave")
        gone = "*** #dev: jason left (kicked by root: behave)"
        root.expect(gone)
        alice.expect(gone)
        part = receiveUntil(jason, lambda o: o["type"] == "part")[-1]
        assert (part["room"], part["nick"], part["reason"]) == ("#dev", "jason", "kicked by root: behave")
        root.send("/notice maintenance at 18:00")
        for client in (root, alice):
            client.expect("*** notice: maintenance at 18:00")
        notice = receiveUntil(jason, lambda o: o["type"] == "notice")[-1]
        assert notice == {"type": "notice", "text": "maintenance at 18:00"}


@pytest.mark.e2e
def test_jsonModeration(startDaemon: Callable[..., Daemon], lineClients: Callable[..., LineClient]) -> None:
    """
    In json mode the room's creator sets the topic, makes another member an
    operator, who kicks, and bans and unbans: a line user in the room sees
    each of them; a json member without the rights gets C{not-allowed}, and
    nothing changes. (Everyone here comes from 127.0.0.1, so banning a nick
    bans that address: every other user from it is put out too.)
    """
    daemon = startDaemon("--store", "memory", web="tcp:0:interface=127.0.0.1")
    bob = named(lineClients(daemon.ports["line"]), "bob")
    with jsonUser(daemon, "jason", ["#dev"]) as jason, jsonUser(daemon, "other", ["#dev"]) as other:
        bob.send("/join #dev")
        bob.expect("*** #dev: members: bob, jason, other")
        other.send(json.dumps({"type": "kick", "nick": "bob", "ref": "k1"}))
        error = receiveUntil(other, lambda o: o["type"] == "error")[-1]
        assert (error["code"], error["ref"]) == ("not-allowed", "k1")
        jason.send(json.dumps({"type": "topic", "topic": "json rules"}))
        bob.expect("*** #dev: topic: json rules (set by jason)")
        topic = receiveUntil(other, lambda o: o["type"] == "topic")[-1]
        assert (topic["room"], topic["topic"], topic["by"]) == ("#dev", "json rules", "jason")
        jason.send(json.dumps({"type": "op", "nick": "other"}))
        assert receiveUntil(other, lambda o: o["type"] == "notice")[-1]["text"] == "you are now an operator of #dev"
        other.send(json.dumps({"type": "kick", "nick": "bob", "reason": "testing"}))
        bob.expect("*** #dev: bob left (kicked by other: testing)")
        bob.send("/join #dev")
        bob.expect("*** #dev: members: bob, jason, other")
        jason.send(json.dumps({"type": "ban", "target": "bob"}))
        assert bob.expect("*** #dev: bob left (banned by jason)") == [
            "*** #dev: topic: json rules (set by jason)",
            "*** #dev: other left (banned by jason)",
        ]
        bob.send("/join #dev")
        bob.expect("!!! you are banned from #dev")
        jason.send(json.dumps({"type": "unban", "target": "bob"}))
        jason.send(json.dumps({"type": "who", "room": "#dev"}))
        receiveUntil(jason, lambda o: o["type"] == "presence")
        bob.send("/join #dev")
        bob.expect("*** #dev: members: bob, jason")
