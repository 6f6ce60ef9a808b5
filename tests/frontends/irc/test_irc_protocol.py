"""
Tests for IRC messages (L{twisted_chat.frontends.irc.protocol}): parsing,
serialising, tags, and cutting text into lines.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from twisted_chat.frontends.irc.protocol import (
    IRCMessage,
    IRCParseError,
    commandOf,
    escapeTag,
    formatMessage,
    parseMessage,
    serverTime,
    splitText,
    unescapeTag,
)


def test_parse() -> None:
    assert parseMessage("PRIVMSG #a :hello there") == IRCMessage({}, "", "PRIVMSG", ["#a", "hello there"])
    assert parseMessage("privmsg #a  b   :") == IRCMessage({}, "", "PRIVMSG", ["#a", "b", ""])
    assert parseMessage(":nick!u@h JOIN #a") == IRCMessage({}, "nick!u@h", "JOIN", ["#a"])
    assert parseMessage("@label=x;+typing=active;flag :s PING :a b") == IRCMessage(
        {"label": "x", "+typing": "active", "flag": ""}, "s", "PING", ["a b"]
    )
    assert parseMessage("001 me :hi") == IRCMessage({}, "", "001", ["me", "hi"])
    assert parseMessage("") is None
    assert parseMessage("   ") is None


def test_parseRefuses() -> None:
    for line in ["@tags", ":source", ":source ", "PRIV-MSG x", "1234 x", "#chan x"]:
        with pytest.raises(IRCParseError):
            parseMessage(line)


def test_fifteenParametersAtMost() -> None:
    m = parseMessage("CMD " + " ".join(str(i) for i in range(20)))
    assert m is not None and len(m.params) == 15
    assert m.params[-1] == "14 15 16 17 18 19"


def test_tagEscapes() -> None:
    assert unescapeTag(r"a\:b\sc\\d\re\nf\x") == "a;b c\\d\re\nfx"
    assert escapeTag("a;b c\\d\re\nf") == r"a\:b\sc\\d\re\nf"


@given(st.text(st.characters(blacklist_categories=["Cs"])))
def test_tagRoundTrip(value: str) -> None:
    assert unescapeTag(escapeTag(value)) == value


def test_format() -> None:
    assert formatMessage("PRIVMSG", ["#a", "hi"], "n!u@h") == ":n!u@h PRIVMSG #a hi"
    assert formatMessage("PRIVMSG", ["#a", "hi there"]) == "PRIVMSG #a :hi there"
    assert formatMessage("TOPIC", ["#a", ""]) == "TOPIC #a :"
    assert formatMessage("PRIVMSG", ["#a", ":)"]) == "PRIVMSG #a ::)"
    assert formatMessage("ACK", tags={"label": "a b", "x": ""}) == r"@label=a\sb;x ACK"
    # (a line break in a parameter would end the line)
    assert formatMessage("TOPIC", ["#a", "x\r\nQUIT"]) == "TOPIC #a :x  QUIT"


_PARAM = st.text(st.characters(blacklist_characters="\r\n\0 ", blacklist_categories=["Cs"]), min_size=1).filter(
    lambda p: not p.startswith(":")
)


@given(st.lists(_PARAM, max_size=5), st.text(st.characters(blacklist_characters="\r\n\0", blacklist_categories=["Cs"])))
def test_formatParseRoundTrip(middle: list[str], last: str) -> None:
    params = middle + [last]
    assert parseMessage(formatMessage("PRIVMSG", params, "s")) == IRCMessage({}, "s", "PRIVMSG", params)


def test_commandOfUndecodableLines() -> None:
    assert commandOf(b"@a=b :src privmsg #x :caf\xe9") == "PRIVMSG"
    assert commandOf(b"\xff\xfe") == "*"
    assert commandOf(b"") == "*"


def test_serverTime() -> None:
    assert serverTime(0) == "1970-01-01T00:00:00.000Z"
    assert serverTime(1767225600.9996) == "2026-01-01T00:00:01.000Z"


def test_splitText() -> None:
    assert list(splitText("short", 10)) == ["short"]
    assert list(splitText("a\nb\r\nc", 10)) == ["a", "b", "c"]
    pieces = list(splitText("é" * 10, 5))
    assert all(len(p.encode()) <= 5 for p in pieces)
    assert "".join(pieces) == "é" * 10
    assert list(splitText("a\0b", 10)) == ["a b"]
