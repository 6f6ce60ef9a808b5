"""
Tests of the IRCv3 drafts of the IRC front-end
(L{twisted_chat.frontends.irc.drafts}): C{+typing}, C{+draft/reply},
C{+draft/react} (C{TAGMSG}), C{REDACT}, C{MARKREAD}, and what an IRC
client sees of the others' edits, deletions, reactions and typing;
IRC lines in and out of in-memory transports, next to members of the
service as any other front-end makes them.
"""

from __future__ import annotations

from typing import TypeVar

from tests.support.fakes import RecordingClient, enter, fired, say
from tests.support.irc import Client
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from twisted_chat.core.auth import hashPassword
from twisted_chat.core.events import Message, PrivateUpdate, Typing, Update
from twisted_chat.core.service import ChatService
from twisted_chat.frontends.irc.connection import IRCFactory
from twisted_chat.frontends.irc.protocol import IRCMessage, serverTime
from twisted_chat.stores.memory import MemoryStore

U = TypeVar("U", Update, PrivateUpdate)

#: what a client of the drafts asks for
DRAFTS = "message-tags echo-message labeled-response draft/message-redaction draft/read-marker"


def ircUser(factory: IRCFactory, nick: str, caps: str = DRAFTS, room: str = "#lobby") -> Client:
    c = Client(factory)
    c.register(nick, caps)
    c.cmd("JOIN " + room)
    return c


def alice(factory: IRCFactory, caps: str = DRAFTS) -> Client:
    """
    alice, logged in (a registered nick: the chat keeps its read positions).
    """
    c = Client(factory)
    c.send("CAP LS 302\r\nCAP REQ :%s\r\n" % (caps,))
    c.send("PASS sesame\r\nNICK alice\r\nUSER u 0 * :x\r\nCAP END\r\n")
    assert c.protocol.member is not None and c.protocol.member.owner
    c.lines()
    return c


def msgid(m: Message) -> str:
    return "%s/%s/%d" % (m.room[1:], m.epoch, m.id)


def updates(record: RecordingClient, kind: type[U]) -> list[U]:
    """
    The updates C{record} got since the last look.
    """
    return [e for e in record.take() if isinstance(e, kind)]


def only(lines: list[IRCMessage], command: str) -> IRCMessage:
    [m] = [m for m in lines if m.command == command]
    return m


# -- typing --


def test_typingBothWays(service: ChatService, factory: IRCFactory) -> None:
    """
    A TAGMSG with +typing is the member's typing; the others' typing comes
    as a TAGMSG with +typing, to the clients with message-tags only.
    """
    bob, record = enter(service, "bob", "#lobby")
    irc = ircUser(factory, "irc")
    plain = ircUser(factory, "plain", caps="")
    record.take(), irc.lines()
    assert irc.cmd("@+typing=active TAGMSG #lobby") == []
    assert [(t.room, t.nick, t.state) for t in record.of(Typing)] == [("#lobby", "irc", "active")]
    plain.lines()

    bob.typing("active", "#lobby")
    [m] = irc.lines()
    assert (m.command, m.source, m.params, m.tags) == ("TAGMSG", "bob!bob@twisted-chat", ["#lobby"], {"+typing": "active"})
    assert plain.lines() == []


def test_typingRefused(service: ChatService, factory: IRCFactory) -> None:
    """
    A typing state the chat does not know, or in a room the client is
    not in, is answered with a FAIL.
    """
    irc = ircUser(factory, "irc")
    [m] = irc.cmd("@+typing=dancing TAGMSG #lobby")
    assert m.command == "FAIL" and m.params[:3] == ["TAGMSG", "INVALID_PARAMS", "#lobby"]
    [m] = irc.cmd("@+typing=active TAGMSG #elsewhere")
    assert m.command == "FAIL" and m.params[:3] == ["TAGMSG", "INVALID_TARGET", "#elsewhere"]


# -- replies --


def test_replyBothWays(service: ChatService, factory: IRCFactory) -> None:
    """
    A PRIVMSG with +draft/reply is said as a reply; a message that replies
    carries +draft/reply to clients with message-tags.
    """
    bob, record = enter(service, "bob", "#lobby")
    irc = ircUser(factory, "irc")
    record.take()
    first = say(bob, "lunch?", "#lobby")
    [m] = irc.lines()
    assert m.tags["msgid"] == msgid(first) and "+draft/reply" not in m.tags

    [echo] = irc.cmd("@+draft/reply=%s PRIVMSG #lobby :yes" % (msgid(first),))
    [said] = [e for e in record.of(Message) if e.text == "yes"]
    assert said.replyTo == first.id
    assert echo.tags["+draft/reply"] == msgid(first)

    answer = fired(bob.say("great", "#lobby", replyTo=said.id))
    [m] = irc.lines()
    assert m.tags["+draft/reply"] == msgid(said) and m.tags["msgid"] == msgid(answer)


def test_replyToNoSuchMessage(service: ChatService, factory: IRCFactory) -> None:
    """
    A reply to a msgid that names no message of the room is refused, and
    nothing is said.
    """
    bob, record = enter(service, "bob", "#lobby")
    irc = ircUser(factory, "irc")
    say(bob, "lunch?", "#lobby")
    irc.lines(), record.take()
    for ref in ["dev/%s/1" % (service.store.epoch,), "lobby/older/1", "nonsense", "lobby/%s/99" % (service.store.epoch,)]:
        [m] = irc.cmd("@+draft/reply=%s PRIVMSG #lobby :yes" % (ref,))
        assert m.command == "FAIL" and m.params[:2] == ["PRIVMSG", "UNKNOWN_MSGID"], ref
    assert record.take() == []


# -- reactions --


def test_reactBothWays(service: ChatService, factory: IRCFactory) -> None:
    """
    A TAGMSG with +draft/react and +draft/reply is a reaction (+draft/unreact
    takes it back); the others' reactions come as TAGMSGs, and not to a
    client without message-tags.
    """
    bob, record = enter(service, "bob", "#lobby")
    irc = ircUser(factory, "irc")
    plain = ircUser(factory, "plain", caps="")
    first = say(bob, "lunch?", "#lobby")
    irc.lines(), plain.lines(), record.take()

    [echo] = irc.cmd("@+draft/react=👍;+draft/reply=%s TAGMSG #lobby" % (msgid(first),))
    [u] = updates(record, Update)
    assert (u.op, u.target, u.emoji, u.on, u.sender) == ("react", first.id, "👍", True, "irc")
    assert (echo.command, echo.tags) == ("TAGMSG", {"msgid": msgid(u), "+draft/react": "👍", "+draft/reply": msgid(first)})
    [m] = irc.cmd("@+draft/unreact=👍;+draft/reply=%s TAGMSG #lobby" % (msgid(first),))
    [u] = updates(record, Update)
    assert (u.op, u.emoji, u.on) == ("react", "👍", False)

    fired(bob.react(first.id, "🎉", True, "#lobby"))
    [m] = irc.lines()
    assert (m.command, m.source, m.params) == ("TAGMSG", "bob!bob@twisted-chat", ["#lobby"])
    assert m.tags["+draft/react"] == "🎉" and m.tags["+draft/reply"] == msgid(first)
    assert m.tags["msgid"] == "lobby/%s/%d" % (first.epoch, u.id + 1)
    fired(bob.react(first.id, "🎉", False, "#lobby"))
    [m] = irc.lines()
    assert m.tags["+draft/unreact"] == "🎉"
    assert plain.lines() == []


def test_reactRefused(service: ChatService, factory: IRCFactory) -> None:
    """
    A reaction without +draft/reply, to no such message, or with an emoji
    the chat does not take, is answered with a FAIL.
    """
    bob, _ = enter(service, "bob", "#lobby")
    irc = ircUser(factory, "irc")
    first = say(bob, "lunch?", "#lobby")
    irc.lines()
    [m] = irc.cmd("@+draft/react=👍 TAGMSG #lobby")
    assert m.command == "FAIL" and m.params[:3] == ["TAGMSG", "INVALID_PARAMS", "#lobby"]
    [m] = irc.cmd("@+draft/react=👍;+draft/reply=lobby/%s/77 TAGMSG #lobby" % (first.epoch,))
    assert m.command == "FAIL" and m.params[:2] == ["TAGMSG", "UNKNOWN_MSGID"]
    [m] = irc.cmd("@+draft/react=%s;+draft/reply=%s TAGMSG #lobby" % ("x" * 17, msgid(first)))
    assert m.command == "FAIL" and m.params[:2] == ["TAGMSG", "INVALID_PARAMS"]


# -- deletions and edits --


def test_redact(service: ChatService, factory: IRCFactory) -> None:
    """
    REDACT deletes one's message: the others get the deletion, the client
    with echo-message its REDACT back.
    """
    bob, record = enter(service, "bob", "#lobby")
    irc = ircUser(factory, "irc")
    record.take()
    [said] = irc.cmd("PRIVMSG #lobby :oops")
    ref = said.tags["msgid"]
    [echo] = irc.cmd("REDACT #lobby %s :typo" % (ref,))
    [u] = updates(record, Update)
    assert (u.op, u.sender, u.author, msgid(u)[: -len(str(u.id))] + str(u.target)) == ("delete", "irc", "irc", ref)
    assert (echo.command, echo.source, echo.params) == ("REDACT", "irc!irc@twisted-chat", ["#lobby", ref, "typo"])
    assert fired(service.store.get("#lobby", u.target)).deleted  # type: ignore[union-attr]


def test_redactRefused(service: ChatService, factory: IRCFactory) -> None:
    """
    REDACT of someone else's message (not an operator), of no such
    message, in a channel the client is not in, or without a msgid: a FAIL
    with the draft's code.
    """
    bob, _ = enter(service, "bob", "#lobby")
    irc = ircUser(factory, "irc")
    first = say(bob, "mine", "#lobby")
    irc.lines()
    [m] = irc.cmd("REDACT #lobby " + msgid(first))
    assert m.command == "FAIL" and m.params[:4] == ["REDACT", "REDACT_FORBIDDEN", "#lobby", msgid(first)]
    [m] = irc.cmd("REDACT #lobby lobby/%s/9" % (first.epoch,))
    assert m.params[:4] == ["REDACT", "UNKNOWN_MSGID", "#lobby", "lobby/%s/9" % (first.epoch,)]
    [m] = irc.cmd("REDACT #dev dev/%s/1" % (first.epoch,))
    assert m.params[:3] == ["REDACT", "INVALID_TARGET", "#dev"]
    [m] = irc.cmd("REDACT #lobby")
    assert m.params[:2] == ["REDACT", "NEED_MORE_PARAMS"]
    assert not fired(service.store.get("#lobby", first.id)).deleted  # type: ignore[union-attr]


def test_redactOwnReaction(service: ChatService, factory: IRCFactory) -> None:
    """
    REDACT of the msgid of one's reaction takes the reaction back.
    """
    bob, record = enter(service, "bob", "#lobby")
    irc = ircUser(factory, "irc")
    first = say(bob, "lunch?", "#lobby")
    irc.lines(), record.take()
    fired(bob.react(first.id, "🎉", True, "#lobby"))
    [theirs] = irc.lines()
    record.take()
    [mine] = irc.cmd("@label=r1;+draft/react=👍;+draft/reply=%s TAGMSG #lobby" % (msgid(first),))
    [u] = updates(record, Update)
    # (the echo names the reaction)
    reaction = mine.tags["msgid"]
    assert (reaction, mine.tags["label"]) == ("lobby/%s/%d" % (first.epoch, u.id), "r1")
    [m] = irc.cmd("REDACT #lobby " + reaction)
    assert m.command == "REDACT" and m.params[1] == reaction
    [u] = updates(record, Update)
    assert (u.op, u.emoji, u.on, u.target) == ("react", "👍", False, first.id)
    [m] = irc.cmd("REDACT #lobby " + theirs.tags["msgid"])
    assert m.params[:2] == ["REDACT", "REDACT_FORBIDDEN"]


def test_othersDeletionsAndEdits(service: ChatService, factory: IRCFactory) -> None:
    """
    Another's deletion is a REDACT for a client with
    draft/message-redaction and a NOTICE for others; an edit is a NOTICE
    with the new text (IRC has no edits), +draft/reply naming the message.
    """
    bob, _ = enter(service, "bob", "#lobby")
    irc = ircUser(factory, "irc")
    plain = ircUser(factory, "plain", caps="")
    first = say(bob, "lunch at 12?", "#lobby")
    irc.lines(), plain.lines()

    fired(bob.edit(first.id, "lunch at 12:30?", "#lobby"))
    [m] = irc.lines()
    assert (m.command, m.source, m.params) == ("NOTICE", "bob!bob@twisted-chat", ["#lobby", 'edited "lunch at 12?": lunch at 12:30?'])
    assert m.tags["+draft/reply"] == msgid(first)
    [m] = plain.lines()
    assert m.command == "NOTICE" and m.params[1] == 'edited "lunch at 12?": lunch at 12:30?' and m.tags == {}

    fired(bob.delete(first.id, "#lobby"))
    [m] = irc.lines()
    assert (m.command, m.source, m.params) == ("REDACT", "bob!bob@twisted-chat", ["#lobby", msgid(first)])
    [m] = plain.lines()
    assert (m.command, m.params) == ("NOTICE", ["#lobby", 'deleted "lunch at 12:30?"'])


def test_deletedLeftOutOfHistory(service: ChatService, factory: IRCFactory) -> None:
    """
    A deleted message is not played back on join, nor in CHATHISTORY.
    """
    bob, _ = enter(service, "bob", "#lobby")
    say(bob, "one", "#lobby")
    two = say(bob, "two", "#lobby")
    say(bob, "three", "#lobby")
    fired(bob.delete(two.id, "#lobby"))
    c = Client(factory)
    c.register("late")
    texts = [m.params[1] for m in c.cmd("JOIN #lobby") if m.command == "PRIVMSG"]
    assert [t.split("] ", 1)[1] for t in texts] == ["one", "three"]
    h = ircUser(factory, "hist", caps="batch draft/chathistory server-time")
    texts = [m.params[1] for m in h.cmd("CHATHISTORY LATEST #lobby * 10") if m.command == "PRIVMSG"]
    assert texts == ["one", "three"]


# -- reactions in history --

#: a client that is shown the reactions of the messages of its history
PLAYBACK = "batch message-tags server-time draft/event-playback"


def reacted(service: ChatService) -> tuple[Message, Message]:
    """
    bob says two messages in #lobby; carol and bob react to the first
    (carol with two emoji), nobody to the second.
    """
    bob, _ = enter(service, "bob", "#lobby")
    carol, _ = enter(service, "carol", "#lobby")
    first = say(bob, "lunch?", "#lobby")
    second = say(bob, "at 12", "#lobby")
    fired(carol.react(first.id, "👍", True, "#lobby"))
    fired(bob.react(first.id, "👍", True, "#lobby"))
    fired(carol.react(first.id, "🎉", True, "#lobby"))
    return first, second


def inBatch(lines: list[IRCMessage]) -> list[IRCMessage]:
    """
    The lines of the one batch among C{lines}, each checked to carry its
    reference.
    """
    [start] = [m for m in lines if m.command == "BATCH" and m.params[0].startswith("+")]
    assert start.params[1] == "chathistory"
    ref = start.params[0][1:]
    inside = [m for m in lines if m.tags.get("batch") == ref]
    assert inside and lines[lines.index(inside[-1]) + 1].params == ["-" + ref]
    return inside


def assertReactionsPlayedBack(lines: list[IRCMessage], first: Message, second: Message) -> None:
    """
    The batch among C{lines} is the first message, a TAGMSG per reaction
    to it (from the reacting nick, in the order they reacted, each emoji
    in turn), then the second message.
    """
    inside = inBatch(lines)
    assert [(m.command, m.source) for m in inside] == [
        ("PRIVMSG", "bob!bob@twisted-chat"),
        ("TAGMSG", "carol!carol@twisted-chat"),
        ("TAGMSG", "bob!bob@twisted-chat"),
        ("TAGMSG", "carol!carol@twisted-chat"),
        ("PRIVMSG", "bob!bob@twisted-chat"),
    ]
    assert (inside[0].tags["msgid"], inside[4].tags["msgid"]) == (msgid(first), msgid(second))
    reactions = inside[1:4]
    assert [m.params for m in reactions] == [["#lobby"]] * 3
    assert [m.tags["+draft/react"] for m in reactions] == ["👍", "👍", "🎉"]
    for m in reactions:
        assert m.tags["+draft/reply"] == msgid(first)
        # (stamped with the message's time; no msgid of their own)
        assert m.tags["time"] == serverTime(first.time) and "msgid" not in m.tags


def test_reactionsPlayedBackOnJoin(service: ChatService, factory: IRCFactory) -> None:
    """
    A join's history shows, after each message, a TAGMSG per reaction it
    has, to a client with batch, message-tags and draft/event-playback;
    a client without draft/event-playback, or without message-tags, gets
    the messages alone.
    """
    first, second = reacted(service)
    irc = Client(factory)
    irc.register("irc", PLAYBACK)
    assertReactionsPlayedBack(irc.cmd("JOIN #lobby"), first, second)
    for caps in ["batch message-tags server-time", "batch server-time draft/event-playback", ""]:
        other = Client(factory)
        other.register("other", caps)
        lines = other.cmd("JOIN #lobby")
        assert [m.command for m in lines if m.command in ("PRIVMSG", "TAGMSG")] == ["PRIVMSG", "PRIVMSG"], caps
        other.cmd("QUIT")


def test_reactionsInChathistory(service: ChatService, factory: IRCFactory) -> None:
    """
    CHATHISTORY shows the reactions of the messages it answers as the
    join's playback does, to the same clients; the limit counts messages.
    """
    first, second = reacted(service)
    h = ircUser(factory, "hist", caps=PLAYBACK + " draft/chathistory")
    assertReactionsPlayedBack(h.cmd("CHATHISTORY LATEST #lobby * 2"), first, second)
    lines = inBatch(h.cmd("CHATHISTORY BEFORE #lobby msgid=%s 1" % (msgid(second),)))
    assert [m.command for m in lines] == ["PRIVMSG", "TAGMSG", "TAGMSG", "TAGMSG"]
    plain = ircUser(factory, "plain", caps="batch message-tags server-time draft/chathistory")
    lines = inBatch(plain.cmd("CHATHISTORY LATEST #lobby * 2"))
    assert [m.command for m in lines] == ["PRIVMSG", "PRIVMSG"]


def test_privateReactionsInHistory(service: ChatService, factory: IRCFactory) -> None:
    """
    A private conversation's history (CHATHISTORY of a nick) shows the
    reactions of its messages as a room's does: the other party's as a
    TAGMSG from it to this client, this nick's own to the other party.
    """
    bob, _ = enter(service, "bob")
    bob.owner = True
    hi = fired(bob.private("alice", "hi alice"))
    a = alice(factory, caps=PLAYBACK + " draft/chathistory echo-message")
    a.lines()
    [echo] = a.cmd("PRIVMSG bob :hi bob")
    said = echo.tags["msgid"]
    fired(bob.updatePrivate(int(said[3:]), "react", emoji="🎉"))
    a.lines()
    a.cmd("@+draft/react=👍;+draft/reply=pm/%d TAGMSG bob" % (hi.id,))
    inside = inBatch(a.cmd("CHATHISTORY LATEST bob * 10"))
    assert [(m.command, m.source, m.params[0]) for m in inside] == [
        ("PRIVMSG", "bob!bob@twisted-chat", "alice"),
        ("TAGMSG", "alice!alice@twisted-chat", "bob"),
        ("PRIVMSG", "alice!alice@twisted-chat", "bob"),
        ("TAGMSG", "bob!bob@twisted-chat", "alice"),
    ]
    assert [(m.tags["+draft/react"], m.tags["+draft/reply"]) for m in (inside[1], inside[3])] == [
        ("👍", "pm/%d" % (hi.id,)),
        ("🎉", said),
    ]
    assert inside[1].tags["time"] == serverTime(hi.time) and "msgid" not in inside[1].tags
    plain = alice(factory, caps="batch message-tags server-time draft/chathistory")
    lines = inBatch(plain.cmd("CHATHISTORY LATEST bob * 10"))
    assert [m.command for m in lines] == ["PRIVMSG", "PRIVMSG"]


def test_privateReactionsPlayedBackAfterWelcome(service: ChatService, factory: IRCFactory) -> None:
    """
    The private messages played back to an owner after its welcome (those
    sent while it was away) come with their reactions.
    """
    bob, _ = enter(service, "bob")
    bob.owner = True
    hi = fired(bob.private("alice", "hi alice"))
    fired(bob.updatePrivate(hi.id, "react", emoji="👋"))
    a = Client(factory)
    a.send("CAP LS 302\r\nCAP REQ :%s\r\n" % (PLAYBACK,))
    a.send("PASS sesame\r\nNICK alice\r\nUSER u 0 * :x\r\nCAP END\r\n")
    inside = inBatch(a.lines())
    assert [(m.command, m.source, m.params[0]) for m in inside] == [
        ("PRIVMSG", "bob!bob@twisted-chat", "alice"),
        ("TAGMSG", "bob!bob@twisted-chat", "alice"),
    ]
    assert (inside[1].tags["+draft/react"], inside[1].tags["+draft/reply"]) == ("👋", "pm/%d" % (hi.id,))


# -- private messages --


def test_privateReplyReactRedact(service: ChatService, factory: IRCFactory) -> None:
    """
    Between two owners, a private message may be answered, reacted to and
    deleted from IRC; the other party's come as TAGMSG and REDACT.
    """
    a = alice(factory)
    bob, record = enter(service, "bob")
    bob.owner = True
    record.take()
    p = fired(bob.private("alice", "hi alice"))
    [m] = a.lines()
    assert m.tags["msgid"] == "pm/%d" % (p.id,)
    [echo] = a.cmd("@+draft/reply=pm/%d PRIVMSG bob :hi bob" % (p.id,))
    assert echo.tags["+draft/reply"] == "pm/%d" % (p.id,)
    [said] = [e for e in record.take() if e.kind == "private" and e.text == "hi bob"]  # type: ignore[attr-defined]
    assert said.replyTo == p.id  # type: ignore[attr-defined]

    fired(bob.updatePrivate(said.id, "react", emoji="🎉"))  # type: ignore[attr-defined]
    [react] = a.lines()
    assert (react.command, react.source, react.params) == ("TAGMSG", "bob!bob@twisted-chat", ["alice"])
    assert react.tags["+draft/reply"] == echo.tags["msgid"] and react.tags["+draft/react"] == "🎉"
    record.take()

    a.cmd("@+draft/react=👍;+draft/reply=pm/%d TAGMSG bob" % (p.id,))
    [u] = updates(record, PrivateUpdate)
    assert (u.op, u.emoji, u.target) == ("react", "👍", p.id)
    a.cmd("REDACT bob " + echo.tags["msgid"])
    [u] = updates(record, PrivateUpdate)
    assert (u.op, u.target) == ("delete", said.id)  # type: ignore[attr-defined]

    fired(bob.updatePrivate(p.id, "delete"))
    [redact] = a.lines()
    assert (redact.command, redact.params) == ("REDACT", ["alice", "pm/%d" % (p.id,)])


# -- read markers --


def test_markReadOnJoin(service: ChatService, factory: IRCFactory, clock: Clock) -> None:
    """
    With draft/read-marker, a JOIN answers the room's read position before
    366: the time of the last message read, or * (none, or a nick the chat
    keeps none for).
    """
    bob, _ = enter(service, "bob", "#lobby")
    first = say(bob, "one", "#lobby")
    a = alice(factory)
    lines = a.cmd("JOIN #lobby")
    commands = [m.command for m in lines]
    assert commands.index("MARKREAD") == commands.index("366") - 1
    assert only(lines, "MARKREAD").params == ["#lobby", "*"]
    guest = ircUser(factory, "guest")
    assert [m.params for m in guest.cmd("JOIN #dev") if m.command == "MARKREAD"] == [["#dev", "*"]]

    fired(service.store.saveRead("alice", "#lobby", first.id))
    a.cmd("PART #lobby")
    lines = a.cmd("JOIN #lobby")
    commands = [m.command for m in lines]
    assert commands.index("MARKREAD") == commands.index("366") - 1
    assert only(lines, "MARKREAD").params == ["#lobby", "timestamp=" + serverTime(first.time)]


def test_markReadSet(service: ChatService, factory: IRCFactory, clock: Clock) -> None:
    """
    MARKREAD with a timestamp stores the last message at or before it as
    the read position; the nick's other connections are told (IRC ones as
    MARKREAD); a timestamp not after the stored position is answered with
    the stored one.
    """
    bob, _ = enter(service, "bob", "#lobby")
    first = say(bob, "one", "#lobby")
    clock.advance(5)
    second = say(bob, "two", "#lobby")
    a, other = alice(factory), alice(factory)
    a.cmd("JOIN #lobby"), other.cmd("JOIN #lobby")
    json = RecordingClient()
    service.connect(json, "alice", authenticated=True).join("#lobby")
    json.take()

    # (a time between the two messages: the first is the last read)
    [m] = a.cmd("@label=m1 MARKREAD #lobby timestamp=" + serverTime(first.time + 2))
    assert (m.command, m.params, m.tags) == ("MARKREAD", ["#lobby", "timestamp=" + serverTime(first.time)], {"label": "m1"})
    assert fired(service.store.reads("alice")) == {"#lobby": first.id}
    assert [(e.room, e.id) for e in json.take() if e.kind == "read"] == [("#lobby", first.id)]  # type: ignore[attr-defined]
    [m] = other.lines()
    assert m.params == ["#lobby", "timestamp=" + serverTime(first.time)]

    [m] = a.cmd("MARKREAD #lobby timestamp=" + serverTime(second.time))
    assert m.params == ["#lobby", "timestamp=" + serverTime(second.time)]
    other.lines()
    # (back in time: not stored, answered with the stored position)
    [m] = a.cmd("MARKREAD #lobby timestamp=" + serverTime(first.time))
    assert m.params == ["#lobby", "timestamp=" + serverTime(second.time)]
    assert fired(service.store.reads("alice")) == {"#lobby": second.id}
    assert other.lines() == []
    [m] = a.cmd("MARKREAD #lobby")
    assert m.params == ["#lobby", "timestamp=" + serverTime(second.time)]


def test_markReadRefused(service: ChatService, factory: IRCFactory) -> None:
    """
    MARKREAD without a target, with a bad timestamp, to a nick, or from a
    nick the chat keeps no read positions for: a FAIL with the draft's code.
    """
    a = alice(factory)
    a.cmd("JOIN #lobby")
    assert a.cmd("MARKREAD")[0].params[:2] == ["MARKREAD", "NEED_MORE_PARAMS"]
    assert a.cmd("MARKREAD #lobby yesterday")[0].params[:3] == ["MARKREAD", "INVALID_PARAMS", "yesterday"]
    assert a.cmd("MARKREAD #lobby timestamp=2026-13-01T00:00:00.000Z")[0].params[:2] == ["MARKREAD", "INVALID_PARAMS"]
    assert a.cmd("MARKREAD bob timestamp=2026-01-01T00:00:00.000Z")[0].params[:3] == ["MARKREAD", "INVALID_PARAMS", "bob"]
    assert a.cmd("MARKREAD bob")[0].params == ["bob", "*"]
    guest = ircUser(factory, "guest")
    [m] = guest.cmd("MARKREAD #lobby timestamp=2026-01-01T00:00:00.000Z")
    assert m.params[:3] == ["MARKREAD", "ACCOUNT_REQUIRED", "#lobby"]


def test_draftCapsOffered(factory: IRCFactory) -> None:
    """
    CAP LS offers draft/message-redaction and draft/read-marker.
    """
    c = Client(factory)
    [m] = c.cmd("CAP LS 302")
    assert {"draft/message-redaction", "draft/read-marker", "message-tags"} <= set(m.params[-1].split())


def test_redactNeedsTheCapability(service: ChatService, factory: IRCFactory) -> None:
    """
    The redaction draft says a client MUST negotiate
    C{draft/message-redaction} to send C{REDACT}: one that did not gets
    C{421} (unknown command) and nothing is deleted. (C{MARKREAD} needs no
    capability to be sent: the read-marker draft's capability only decides
    what the server sends unasked.)
    """
    irc = ircUser(factory, "irc", "message-tags echo-message")
    [said] = irc.cmd("PRIVMSG #lobby :oops")
    [m] = irc.cmd("REDACT #lobby %s :typo" % (said.tags["msgid"],))
    assert (m.command, m.params[1]) == ("421", "REDACT")
    assert not fired(service.store.get("#lobby", 1)).deleted  # type: ignore[union-attr]


# -- what the nick does from its other connections --


def test_ownNickFromAnotherConnection(service: ChatService, factory: IRCFactory) -> None:
    """
    An IRC client sees what its nick says, edits, deletes and reacts to
    from another connection (another device), as anyone's: room messages
    to the room, private messages and their updates to the other party;
    its own requests still come back once (the echo).
    """
    a = alice(factory)
    a.cmd("JOIN #lobby")
    bob, _ = enter(service, "bob", "#lobby")
    bob.owner = True
    phone = service.connect(RecordingClient(), "alice", authenticated=True)
    phone.join("#lobby")
    a.lines()

    m = say(phone, "from my phone", "#lobby")
    [line] = a.lines()
    assert (line.command, line.source, line.params) == ("PRIVMSG", "alice!alice@twisted-chat", ["#lobby", "from my phone"])
    assert line.tags["msgid"] == msgid(m)

    fired(phone.edit(m.id, "from my phone!", "#lobby"))
    fired(phone.react(m.id, "👍", True, "#lobby"))
    fired(phone.delete(m.id, "#lobby"))
    assert [(x.command, x.params[0]) for x in a.lines()] == [("NOTICE", "#lobby"), ("TAGMSG", "#lobby"), ("REDACT", "#lobby")]

    p = fired(phone.private("bob", "psst"))
    [line] = a.lines()
    assert (line.command, line.source, line.params, line.tags["msgid"]) == (
        "PRIVMSG", "alice!alice@twisted-chat", ["bob", "psst"], "pm/%d" % (p.id,),
    )
    fired(phone.updatePrivate(p.id, "delete"))
    [line] = a.lines()
    assert (line.command, line.params) == ("REDACT", ["bob", "pm/%d" % (p.id,)])

    # its own: the echo only
    assert [(x.command, x.params) for x in a.cmd("PRIVMSG #lobby :from irc")] == [("PRIVMSG", ["#lobby", "from irc"])]
    assert [(x.command, x.params) for x in a.cmd("PRIVMSG bob :hi")] == [("PRIVMSG", ["bob", "hi"])]
    assert a.lines() == []


class HeldStore(MemoryStore):
    """
    A store whose appends, while C{holding}, answer when the test says so.
    """

    def __init__(self) -> None:
        super().__init__()
        self.holding = False
        self.held: list[tuple[Deferred[object], object]] = []

    def append(self, message: object, ref: str | None = None) -> Deferred[object]:  # type: ignore[override]
        stored = super().append(message, ref)  # type: ignore[arg-type]
        if not self.holding:
            return stored
        d: Deferred[object] = Deferred()
        self.held.append((d, stored.result))
        return d

    def answer(self) -> None:
        held, self.held = self.held, []
        for d, result in held:
            d.callback(result)


def test_ownNickHeldWhileInFlight(clock: Clock) -> None:
    """
    What the nick does from another connection while this IRC connection
    waits for its own message to be stored comes after that message's
    echo, and the echo is not repeated.
    """
    store = HeldStore()
    service = ChatService(store=store, clock=clock, passwords={"alice": hashPassword("sesame", n=2)})
    factory = IRCFactory(service, clock=clock)
    a = alice(factory)
    a.cmd("JOIN #lobby")
    phone = service.connect(RecordingClient(), "alice", authenticated=True)
    phone.join("#lobby")
    a.lines()

    store.holding = True
    assert a.cmd("PRIVMSG #lobby :first") == []
    store.holding = False
    say(phone, "second", "#lobby")
    assert a.lines() == []
    store.answer()
    assert [(x.command, x.params) for x in a.lines()] == [
        ("PRIVMSG", ["#lobby", "first"]),
        ("PRIVMSG", ["#lobby", "second"]),
    ]
    # with nothing in flight, at once
    say(phone, "third", "#lobby")
    assert [x.params for x in a.lines()] == [["#lobby", "third"]]
