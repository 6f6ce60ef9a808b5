"""
Tests for the nickname and room-name rules of L{twisted_chat.core.names}.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twisted_chat.core.errors import ChatError
from twisted_chat.core.names import checkNick, nickKey, normalizeRoom

NICK_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"
#: characters a nick or room name must not contain: punctuation, blanks,
#: control characters, non-ASCII letters and digits
OTHER_CHARS = " !#$%&*+,./:;<=>?@[]^`{|}~\t\n\r\x00\x7féÉßı٣١ＡⅫ😀"


@pytest.mark.parametrize("nick", ["a", "Z", "7", "_", "-", "alice", "Bob_the-2nd", "x" * 24])
def test_validNicks(nick: str) -> None:
    """
    Nicknames of 1 to 24 ASCII letters, digits, C{_} and C{-} are accepted
    unchanged: case is kept for display.
    """
    assert checkNick(nick) == nick


@pytest.mark.parametrize(
    "nick",
    ["", "x" * 25, "al ice", "alice!", "al.ice", "#alice", "élise", "alice\n", "\talice", "ali\x00ce", None, 42, b"alice"],
)
def test_invalidNicks(nick: object) -> None:
    """
    Anything else, including an empty or 25-character name, spaces,
    punctuation, non-ASCII letters, a trailing newline and non-strings, is
    refused with the C{bad-nick} error and a message that states the rule.
    """
    with pytest.raises(ChatError) as e:
        checkNick(nick)
    assert e.value.code == "bad-nick"
    assert e.value.message == "nicknames are 1-24 letters, digits, _ or -"


def test_nickKeyIgnoresCase() -> None:
    """
    Nicknames that differ only in case have the same identity.
    """
    assert nickKey("Alice") == nickKey("aLICE") == nickKey("alice")
    assert nickKey("alice") != nickKey("alice2")


@settings(database=None)
@given(st.text(alphabet=NICK_CHARS, min_size=1, max_size=24))
def test_everyNickMatchingTheRuleIsAccepted(nick: str) -> None:
    """
    Every string of 1-24 characters from the allowed alphabet is a valid nick.
    """
    assert checkNick(nick) == nick


@settings(database=None)
@given(st.text(alphabet=NICK_CHARS + OTHER_CHARS, min_size=1, max_size=30))
def test_nicksOutsideTheAlphabetAreRefused(nick: str) -> None:
    """
    A string with any character outside the allowed alphabet, or longer than
    24 characters, is never accepted as a nick.
    """
    valid = len(nick) <= 24 and all(c in NICK_CHARS for c in nick)
    if valid:
        assert checkNick(nick) == nick
    else:
        with pytest.raises(ChatError):
            checkNick(nick)


@pytest.mark.parametrize(
    "typed, canonical",
    [
        ("lobby", "#lobby"),
        ("#lobby", "#lobby"),
        ("#Dev", "#dev"),
        ("DEV", "#dev"),
        ("a", "#a"),
        ("#my_room-2", "#my_room-2"),
        ("r" * 32, "#" + "r" * 32),
        ("#" + "R" * 32, "#" + "r" * 32),
    ],
)
def test_roomNamesAreNormalized(typed: str, canonical: str) -> None:
    """
    A room name of 1 to 32 allowed characters, typed with or without the
    leading C{#} and in any case, names the room shown as C{#} plus the name
    in lower case.
    """
    assert normalizeRoom(typed) == canonical


@pytest.mark.parametrize(
    "name",
    ["", "#", "##dev", "r" * 33, "#" + "r" * 33, "my room", "dev!", "#dév", "dev\n", "&dev", None, 7],
)
def test_invalidRoomNames(name: object) -> None:
    """
    Empty names, a bare C{#}, a doubled C{#}, names over 32 characters and
    names with other characters are refused with C{bad-room} and a message
    that states the rule.
    """
    with pytest.raises(ChatError) as e:
        normalizeRoom(name)
    assert e.value.code == "bad-room"
    assert e.value.message == "room names are # and 1-32 letters, digits, _ or -"


@settings(database=None)
@given(st.text(alphabet=NICK_CHARS, min_size=1, max_size=32), st.booleans())
def test_normalizedRoomNamesAreStable(name: str, hashed: bool) -> None:
    """
    A canonical room name is its own canonical name, and the name typed with
    or without C{#} or in another case gives the same room.
    """
    typed = ("#" + name) if hashed else name
    canonical = normalizeRoom(typed)
    assert canonical == "#" + name.lower()
    assert normalizeRoom(canonical) == canonical
    assert normalizeRoom(name.upper()) == canonical
