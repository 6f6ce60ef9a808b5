"""
Tests for registered nicknames (L{twisted_chat.core.auth}, C{--auth},
C{--require-auth}, C{--admin}): the password file and its tool, and logging
in through the real daemon on the line chat and in WebSocket json mode.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import pytest

from twisted_chat.core.auth import AuthFileError, hashPassword, loadPasswords, verifyPassword

from tests.support.wsclients import isType, receiveUntil, sendJson, webSocket

if TYPE_CHECKING:
    from tests.support.daemon import Daemon, LineClient

TIMEOUT = 10.0
LOOPBACK = "tcp:0:interface=127.0.0.1"

#: distinctive, so that the daemon's log can be searched for them
RIGHT = "correct-horse-7731"
WRONG = "wrong-battery-9924"

# -- hashes and the password file ----------------------------------------------


def test_hashAndVerify() -> None:
    """
    A hash verifies its own password and no other; hashing the same
    password twice gives different hashes (a random salt), both valid.
    """
    first, second = hashPassword(RIGHT), hashPassword(RIGHT)
    assert first != second
    assert first.startswith("scrypt$16384$8$1$")
    assert verifyPassword(RIGHT, first) and verifyPassword(RIGHT, second)
    assert not verifyPassword(WRONG, first)
    assert not verifyPassword("", first)


@pytest.mark.parametrize("encoded", ["", "plain", "md5$1$2$3$AA==$AA==", "scrypt$x$8$1$AA==$AA==", "scrypt$4$8$1$!!$AA=="])
def test_verifyMalformedHash(encoded: str) -> None:
    """
    A malformed hash matches no password; checking it does not raise.
    """
    assert verifyPassword("anything", encoded) is False


def test_loadPasswords(tmp_path: Path) -> None:
    """
    The file has C{NICK:HASH} lines; blank lines and C{#} comments are
    skipped, and nicks are found without regard to case.
    """
    alice, bob = hashPassword("a"), hashPassword("b")
    path = tmp_path / "users.txt"
    path.write_text("# registered users\n\nAlice:%s\n  bob:%s  \n" % (alice, bob))
    assert loadPasswords(str(path)) == {"alice": alice, "bob": bob}


@pytest.mark.parametrize(
    "line, reason",
    [
        ("bob", "expected NICK:HASH"),
        ("bad nick:%s" % (hashPassword("x", n=2),), "nicknames are 1-24 letters, digits, _ or -"),
        ("bob:", "not enough values to unpack (expected 6, got 1)"),
        ("bob:md5$1$2$3$AA==$AA==", "unknown hash scheme 'md5'"),
        ("bob:scrypt$16384$8$1$not base64$AA==", "Only base64 data is allowed"),
    ],
)
def test_loadPasswordsErrors(tmp_path: Path, line: str, reason: str) -> None:
    """
    A line that is not C{NICK:HASH} with a valid nick and hash is refused
    with the file's name, the line's number and why.
    """
    path = tmp_path / "users.txt"
    path.write_text("# users\nalice:%s\n%s\n" % (hashPassword("a", n=2), line))
    with pytest.raises(AuthFileError) as e:
        loadPasswords(str(path))
    assert str(e.value) == "%s line 3: %s" % (path, reason)


def test_loadPasswordsUnreadable(tmp_path: Path) -> None:
    """
    A missing file and one that is not UTF-8 text are refused, saying so.
    """
    missing = tmp_path / "missing.txt"
    with pytest.raises(AuthFileError) as e:
        loadPasswords(str(missing))
    assert str(e.value) == "cannot read %s: No such file or directory" % (missing,)
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"alice:\xff\xfe\n")
    with pytest.raises(AuthFileError) as e:
        loadPasswords(str(binary))
    assert str(e.value) == "%s is not UTF-8 text" % (binary,)


def passwdCommand(*args: str) -> list[str]:
    """
    The C{twisted-chat-passwd} console script next to the interpreter
    running the tests, or its entry point through C{-c}.
    """
    script = Path(sys.executable).with_name("twisted-chat-passwd")
    if script.exists():
        return [sys.executable, str(script), *args]
    return [sys.executable, "-c", "from twisted_chat.core.auth import main; raise SystemExit(main())", *args]


def runPasswd(*args: str, input: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(passwdCommand(*args), input=input, capture_output=True, text=True, timeout=30)


def test_passwdRoundTrip(tmp_path: Path) -> None:
    """
    C{twisted-chat-passwd NICK}, given the password on a pipe, prints one
    C{NICK:HASH} line; appended to a file, the daemon's loader reads it,
    and it verifies that password and no other.
    """
    done = runPasswd("Alice", input=RIGHT + "\n")
    assert (done.returncode, done.stderr) == (0, "")
    assert re.fullmatch(r"Alice:scrypt\$16384\$8\$1\$\S+\$\S+\n", done.stdout)
    assert RIGHT not in done.stdout
    path = tmp_path / "users.txt"
    path.write_text(done.stdout)
    users = loadPasswords(str(path))
    assert list(users) == ["alice"]
    assert verifyPassword(RIGHT, users["alice"])
    assert not verifyPassword(WRONG, users["alice"])


@pytest.mark.parametrize(
    "args, input, status, stderr",
    [
        ((), "x\n", 2, "usage: twisted-chat-passwd NICK  (prints NICK:HASH for the --auth file)\n"),
        (("bad nick",), "x\n", 2, "twisted-chat-passwd: nicknames are 1-24 letters, digits, _ or -\n"),
        (("alice",), "\n", 1, "twisted-chat-passwd: empty password\n"),
    ],
)
def test_passwdErrors(args: tuple[str, ...], input: str, status: int, stderr: str) -> None:
    """
    A missing or invalid nick, or an empty password, prints one line on
    stderr, nothing on stdout, and exits non-zero.
    """
    done = runPasswd(*args, input=input)
    assert (done.returncode, done.stdout, done.stderr) == (status, "", stderr)


# -- start-up ---------------------------------------------------------------------


def usersFile(folder: Path, **users: str) -> Path:
    """
    A password file in C{folder} registering C{nick=password} pairs.
    """
    path = folder / "users.txt"
    path.write_text("".join("%s:%s\n" % (nick, hashPassword(pw)) for nick, pw in users.items()))
    return path


@pytest.mark.e2e
def test_badPasswordFileStopsStartUp(runTwistd: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path) -> None:
    """
    A password file with a bad line stops the daemon at start-up: exit
    status 1 and one line naming the file and the line.
    """
    path = tmp_path / "users.txt"
    path.write_text("# users\nalice:%s\nbob\n" % (hashPassword("a", n=2),))
    done = runTwistd("--auth", str(path), "--store", "memory", "--line", LOOPBACK, "--web", "none")
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr == "twistd chat: %s line 3: expected NICK:HASH (see twistd chat --help)\n" % (path,)


@pytest.mark.e2e
@pytest.mark.parametrize(
    "args, message",
    [
        (("--auth", "{users}", "--admin", "bob"), "admin bob is not a registered nick of {users}"),
        (("--admin", "alice"), "--require-auth and --admin need --auth FILE"),
        (("--require-auth",), "--require-auth and --admin need --auth FILE"),
    ],
)
def test_adminMustBeRegistered(
    runTwistd: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    """
    C{--admin} names a registered nick of the C{--auth} file, and
    C{--admin} and C{--require-auth} need one: otherwise start-up stops
    with exit status 1 and one line saying so.
    """
    users = str(usersFile(tmp_path, alice="a"))
    options = [arg.format(users=users) for arg in args]
    done = runTwistd(*options, "--store", "memory", "--line", LOOPBACK, "--web", "none")
    assert done.returncode == 1
    assert done.stderr == "twistd chat: %s (see twistd chat --help)\n" % (message.format(users=users),)


# -- logging in ---------------------------------------------------------------------


@pytest.fixture
def authDaemon(startDaemon: Callable[..., Daemon], tmp_path: Path) -> Daemon:
    """
    The daemon with alice registered (password C{RIGHT}), line chat and web.
    """
    users = usersFile(tmp_path, alice=RIGHT)
    return startDaemon("--auth", str(users), "--store", "memory", web=LOOPBACK)


@pytest.mark.e2e
def test_lineLogin(authDaemon: Daemon, lineClients: Callable[..., LineClient]) -> None:
    """
    On the line chat a registered nick cannot be taken with C{/nick}; a
    wrong password is refused; with the right one C{/login} takes the nick,
    and so does C{/nick NICK PASSWORD}. A nick logged in on one connection
    cannot be logged into from another. No password ever reaches the log.
    """
    port = authDaemon.ports["line"]
    guest = lineClients(port)
    guest.welcome()
    guest.send("/nick alice")
    guest.expect("!!! alice is registered: /login alice PASSWORD")
    guest.send("/nick ALICE")
    guest.expect("!!! ALICE is registered: /login ALICE PASSWORD")
    guest.send("/login alice " + WRONG)
    guest.expect("!!! wrong nick or password")
    guest.send("/login nobody " + WRONG)
    guest.expect("!!! wrong nick or password")
    guest.send("/login alice " + RIGHT)
    assert guest.expect("*** you are logged in as alice") == ["*** you are now alice"]
    guest.send("logged in")
    guest.expect("#lobby <alice> logged in")
    other = lineClients(port)
    other.welcome()
    other.send("/login alice " + RIGHT)
    other.expect("!!! alice is logged in on another connection")
    guest.send("/quit")
    guest.expect("*** bye")
    other.expect("*** #lobby: alice left (quit)")
    other.send("/nick alice " + RIGHT)
    assert other.expect("*** you are logged in as alice") == ["*** you are now alice"]
    authDaemon.waitForLog(r"login as alice accepted")
    for secret in (RIGHT, WRONG):
        assert secret not in authDaemon.log


@pytest.mark.e2e
def test_jsonLogin(authDaemon: Daemon) -> None:
    """
    In json mode a hello with a registered nick and no password is refused
    with C{nick-registered}, with a wrong password with C{bad-login}; the
    connection stays, and a hello with the right password is welcomed as
    authenticated owner of the nick. No password ever reaches the log.
    """
    with webSocket(authDaemon) as ws:
        sendJson(ws, type="hello", nick="alice")
        error = receiveUntil(ws, isType("error"))
        assert [(o["type"], o.get("code")) for o in error] == [("error", "nick-registered")]
        sendJson(ws, type="hello", nick="alice", password=WRONG, ref=1)
        error = receiveUntil(ws, isType("error"))[-1]
        assert (error["code"], error["message"], error["ref"]) == ("bad-login", "wrong nick or password", 1)
        sendJson(ws, type="hello", nick="alice", password=RIGHT)
        seen = receiveUntil(ws, isType("history"))
        welcome = seen[0]
        assert (welcome["type"], welcome["nick"], welcome["rooms"]) == ("welcome", "alice", ["#lobby"])
        assert welcome["authenticated"] is True and welcome["owner"] is True
        sendJson(ws, type="say", text="hi", ref="s1")
        ack = receiveUntil(ws, isType("ack"))[-1]
        assert ack["ref"] == "s1"
    authDaemon.waitForLog(r"login as alice accepted")
    for secret in (RIGHT, WRONG):
        assert secret not in authDaemon.log


@pytest.mark.e2e
def test_requireAuth(startDaemon: Callable[..., Daemon], lineClients: Callable[..., LineClient], tmp_path: Path) -> None:
    """
    With C{--require-auth}, a line guest is told to log in and is in no
    room; joining and private messages are refused with "log in first";
    after C{/login} it is put in #lobby and chats. A json guest is welcomed
    into no room with C{auth-required}, is refused joins the same way, and
    after a C{login} request can join and talk.
    """
    users = usersFile(tmp_path, alice=RIGHT, bob=RIGHT + "-bob")
    daemon = startDaemon("--auth", str(users), "--require-auth", "--store", "memory", web=LOOPBACK)
    guest = lineClients(daemon.ports["line"])
    greeting = guest.readLine(time.monotonic() + TIMEOUT) or ""
    assert re.fullmatch(
        r"\*\*\* Welcome to twisted-chat, guest-\d+! This server is for registered users: /login NICK PASSWORD", greeting
    )
    guest.send("hello?")
    guest.expect("!!! you are in no room: /join one first")
    guest.send("/join #lobby")
    guest.expect("!!! log in first: /login NICK PASSWORD")
    guest.send("/rooms")
    guest.expect("*** rooms: none")
    guest.send("/login alice " + RIGHT)
    assert guest.expect("*** #lobby: members: alice") == [
        "*** you are now alice",
        "*** you are logged in as alice",
        "*** #lobby: alice joined",
    ]
    guest.send("now I can talk")
    guest.expect("#lobby <alice> now I can talk")
    with webSocket(daemon) as ws:
        sendJson(ws, type="hello", nick="visitor")
        seen = receiveUntil(ws, isType("error"))
        assert (seen[0]["type"], seen[0]["nick"], seen[0]["rooms"]) == ("welcome", "visitor", [])
        assert seen[-1]["code"] == "auth-required"
        assert [o for o in seen if o["type"] in ("join", "presence", "history")] == []
        sendJson(ws, type="join", room="#lobby", ref="j1")
        error = receiveUntil(ws, isType("error"))[-1]
        assert (error["code"], error["ref"]) == ("auth-required", "j1")
        sendJson(ws, type="msg", to="alice", text="psst")
        assert receiveUntil(ws, isType("error"))[-1]["code"] == "auth-required"
        sendJson(ws, type="login", nick="bob", password=RIGHT + "-bob", ref="l1")
        ack = receiveUntil(ws, isType("ack"))[-1]
        assert ack == {"type": "ack", "ref": "l1", "nick": "bob"}
        sendJson(ws, type="join", room="#lobby")
        receiveUntil(ws, isType("history"))
        sendJson(ws, type="say", text="json is in")
        guest.expect("#lobby <bob> json is in")
    for secret in (RIGHT, RIGHT + "-bob"):
        assert secret not in daemon.log
