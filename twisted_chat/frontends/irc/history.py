# -*- test-case-name: tests.frontends.irc.test_irc -*-
"""
C{CHATHISTORY} (IRCv3 C{draft/chathistory}): a room's history, and a
client's private conversation with a nick, in a C{chathistory} batch.

Messages are referred to by C{msgid} (C{ROOM/EPOCH/ID}, C{pm/ID} for
private ones; ISUPPORT C{MSGREFTYPES=msgid}); timestamps are not taken.
For a room: C{LATEST} (C{*} or after a msgid), C{BEFORE}, C{AFTER},
C{AROUND}, C{BETWEEN}, each at most C{CHATHISTORY} (ISUPPORT) messages; a
msgid of an older epoch (the store lost its messages since) refers to
nothing that is left. For a nick: the recent private messages with it, for
a client that logged in (others have no private history), filtered by the
same references. C{TARGETS} answers an empty batch (the chat does not
index conversations by time).

While a history is read, what the client sends next waits for it, so that
answers come in order.

A client with C{draft/event-playback} gets each message's reactions after
it (L{Renderer.playbackLines
<twisted_chat.frontends.irc.render.Renderer.playbackLines>}).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted_chat.core.errors import ChatError
from twisted_chat.core.events import History, Message, Private, PrivateHistory
from twisted_chat.core.names import checkNick, normalizeRoom
from twisted_chat.frontends.irc.peer import Wanted
from twisted_chat.frontends.irc.protocol import SERVER_NAME, formatMessage, parseMsgid

if TYPE_CHECKING:
    from twisted_chat.frontends.irc.peer import Peer
    from twisted_chat.frontends.irc.protocol import IRCMessage

_SUBCOMMANDS = ("LATEST", "BEFORE", "AFTER", "AROUND", "BETWEEN")
#: the requests answered with the first messages after a reference (the
#: others: with the last ones before it, or the latest)
_FIRST = ("AFTER", "AROUND", "BETWEEN")


class HistoryError(Exception):
    """
    A C{CHATHISTORY} request that cannot be answered: C{FAIL CHATHISTORY
    CODE …}.
    """

    def __init__(self, code: str, *context: str) -> None:
        super().__init__(code)
        self.code = code
        self.context = context


def _reference(value: str, room: str | None) -> tuple[str | None, int]:
    """
    C{(epoch, id)} of the reference C{value} (C{msgid=…}) in C{room}
    (None: a private conversation).
    """
    if not value.startswith("msgid="):
        raise HistoryError("INVALID_PARAMS", value, "only msgid= references are taken")
    msgid = value[6:]
    if room is None:
        if msgid.startswith("pm/") and msgid[3:].isdigit():
            return None, int(msgid[3:])
        raise HistoryError("INVALID_PARAMS", value, "not a private message's msgid")
    parsed = parseMsgid(msgid)
    if parsed is None or parsed[0] != room:
        raise HistoryError("INVALID_PARAMS", value, "not a msgid of %s" % (room,))
    return parsed[1], parsed[2]


def _limit(value: str, most: int) -> int:
    if not value.isdigit():
        raise HistoryError("INVALID_PARAMS", value, "the limit is a number")
    return min(int(value), most)


def _bounds(sub: str, refs: list[tuple[str | None, int]], limit: int) -> tuple[int | None, int | None]:
    """
    The ids to keep (above, below) for C{sub} with its references.
    """
    if sub == "LATEST":
        return (refs[0][1] if refs else None), None
    ref = refs[0][1]
    if sub == "BEFORE":
        return None, ref
    if sub == "AFTER":
        return ref, None
    if sub == "AROUND":
        low = max(0, ref - limit // 2 - 1)
        return low, low + limit + 1
    return min(ref, refs[1][1]), max(ref, refs[1][1])


class HistoryCommands:
    """
    C{CHATHISTORY}.
    """

    def req_CHATHISTORY(self, conn: Peer, msg: IRCMessage) -> None:
        params = msg.params
        sub = params[0].upper() if params else ""
        if sub == "TARGETS":
            conn.sendUnit(conn.batch("draft/chathistory-targets", [], []))
            return
        if sub not in _SUBCOMMANDS:
            conn.fail("CHATHISTORY", "INVALID_PARAMS", sub or "*", "unknown subcommand")
            return
        needed = 5 if sub == "BETWEEN" else 4
        if len(params) < needed:
            conn.fail("CHATHISTORY", "NEED_MORE_PARAMS", sub, "Not enough parameters")
            return
        target = params[1]
        try:
            self._request(conn, sub, target, params[2 : needed - 1], params[needed - 1])
        except HistoryError as e:
            conn.fail("CHATHISTORY", e.code, *e.context)
        except ChatError as e:
            conn.fail("CHATHISTORY", "INVALID_TARGET", sub, target, e.message)

    def _request(self, conn: Peer, sub: str, target: str, refs: list[str], limitText: str) -> None:
        member = conn.member
        assert member is not None
        most = max(member.service.settings.historySize, 200)
        limit = _limit(limitText, most)
        room = normalizeRoom(target) if target.startswith("#") else None
        if room is None:
            checkNick(target)
        parsed = [] if sub == "LATEST" and refs[0] == "*" else [_reference(r, room) for r in refs]
        low, high = _bounds(sub, parsed, limit)
        if sub == "BETWEEN" and parsed[0][1] > parsed[1][1]:
            # (backwards: the last messages before the first reference)
            sub = "BEFORE"
        epoch = parsed[0][0] if parsed else None
        wanted = Wanted(room or target, sub, low, high, limit, epoch, None)
        store = conn.service.store
        if room is not None and epoch is not None and epoch != store.epoch:
            # (ids of an epoch whose messages are gone: LATEST is all that is left)
            if sub != "LATEST":
                conn.sendUnit(conn.batch("chathistory", [room], []))
                return
            wanted = wanted._replace(low=None, epoch=None)
        wanted = wanted._replace(reply=conn.later())
        conn.render.historyWanted = wanted
        conn.holdInput()
        if room is None:
            member.privateHistory(None)
        elif sub in _FIRST:
            member.history(room, limit, before=high, after=low)
        else:
            # (the last `limit` below `high`; those not above `low` are left out)
            member.history(room, limit, before=high)
            member.privateHistory(None)


def _asUnit(unit: list[str] | str) -> str:
    return unit if isinstance(unit, str) else "\r\n".join(unit)


def _keep(wanted: Wanted, ids: list[int]) -> list[int]:
    """
    The positions in C{ids} (ascending) that C{wanted} keeps.
    """
    kept = [
        i
        for i, id in enumerate(ids)
        if (wanted.low is None or id > wanted.low) and (wanted.high is None or id < wanted.high)
    ]
    if wanted.sub in _FIRST:
        return kept[: wanted.limit]
    return kept[-wanted.limit :] if wanted.limit else []


def historyArrived(conn: Peer, h: History) -> None:
    """
    A history the client asked for came: answer its C{CHATHISTORY}.
    """
    wanted = conn.render.historyWanted
    if wanted is None or wanted.target != h.room:
        return
    conn.render.historyWanted = None
    if h.reason == "unavailable":
        conn.answer(
            wanted.reply,
            formatMessage("FAIL", ["CHATHISTORY", "MESSAGE_ERROR", wanted.sub, h.room, "the history cannot be read now"], SERVER_NAME),
        )
    else:
        # (a deleted message is left out, as the redaction draft allows)
        messages: list[Message] = [m for m in h.messages if not m.deleted]
        keep = _keep(wanted, [m.id for m in messages])
        lines = [line for i in keep for line in conn.render.playbackLines(messages[i])]
        conn.answer(wanted.reply, conn.batch("chathistory", [h.room], lines))
    conn.finish(wanted.reply)
    conn.releaseInput()


def privateHistoryArrived(conn: Peer, ph: PrivateHistory) -> None:
    """
    Private messages came: the answer of a C{CHATHISTORY} of a nick, or
    (after registration) what the client missed while away.
    """
    wanted = conn.render.historyWanted
    if wanted is None or wanted.target.startswith("#"):
        if ph.messages:
            lines = [line for p in ph.messages for line in conn.render.privatePlaybackLines(p)]
            conn.answer(None, conn.batch("chathistory", [conn.nick], lines))
        return
    conn.render.historyWanted = None
    partner = wanted.target.lower()
    with_: list[Private] = [
        p for p in ph.messages if partner in (p.sender.lower(), p.recipient.lower())
    ]
    keep = _keep(wanted, [p.id for p in with_])
    lines = [line for i in keep for line in conn.render.privatePlaybackLines(with_[i])]
    conn.answer(wanted.reply, conn.batch("chathistory", [wanted.target], lines))
    conn.finish(wanted.reply)
    conn.releaseInput()
