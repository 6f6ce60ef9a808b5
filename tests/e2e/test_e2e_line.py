"""
End-to-end tests: the real C{twistd chat} daemon in a subprocess, with
several line-chat clients on loopback.

Every read is bounded by a deadline (see L{tests.support.daemon.LineClient}); nothing
sleeps. To check that a client got I{nothing} in between, it sends /help and
reads up to the help text's last line: everything the server sent it before
that is in the lines read on the way.
"""

from __future__ import annotations

import re

import signal
import socket
import time
from typing import TYPE_CHECKING, Callable

import pytest

from twisted_chat.wire.commands import HELP

from tests.support.lines import rename

if TYPE_CHECKING:
    from tests.support.daemon import Daemon, LineClient

pytestmark = pytest.mark.e2e

HELP_END = "*** " + HELP[-1]


def barrier(client: LineClient) -> list[str]:
    """
    Everything the server sent C{client} before its answer to a /help sent now.
    """
    client.send("/help")
    before = client.expect(HELP_END)
    assert before[-len(HELP) + 1 :] == ["*** " + h for h in HELP[:-1]]
    return before[: -len(HELP) + 1]


def named(client: LineClient, nick: str) -> LineClient:
    """
    Read the greeting and take C{nick}, with nothing else said in between;
    C{client.guest} is the guest nick.
    """
    assert rename(client, nick) == []
    return client


def test_threeUsersChat(chatDaemon: Daemon, lineClients: Callable[..., LineClient]) -> None:
    """
    Three people on the line chat see each other arrive, talk in #lobby,
    move to another room, whisper, and see each other leave, including a
    connection that simply drops.
    """
    port = chatDaemon.ports["line"]
    alice = named(lineClients(port), "alice")

    bob = lineClients(port)
    guest = bob.welcome()
    assert alice.expect("*** #lobby: %s joined" % (guest,)) == []
    bob.send("/nick bob")
    assert bob.expect("*** you are now bob") == []
    assert alice.expect("*** #lobby: %s is now known as bob" % (guest,)) == []

    carol = named(lineClients(port), "carol")
    for c in (alice, bob):
        assert c.expect("*** #lobby: %s is now known as carol" % (carol.guest,)) == [
            "*** #lobby: %s joined" % (carol.guest,)
        ]

    alice.send("hello all")
    for c in (alice, bob, carol):
        assert c.expect("#lobby <alice> hello all") == []

    bob.send("/join dev")
    assert bob.expect("*** #dev: members: bob") == ["*** #dev: bob joined"]
    carol.send("/join #DEV")
    assert carol.expect("*** #dev: members: bob, carol") == ["*** #dev: carol joined"]
    assert bob.expect("*** #dev: carol joined") == []
    carol.send("psst, in dev")
    for c in (bob, carol):
        assert c.expect("#dev <carol> psst, in dev") == []
    assert barrier(alice) == []

    alice.send("/msg Bob just between us")
    assert alice.expect("-> *bob* just between us") == []
    assert bob.expect("*alice* just between us") == []
    assert barrier(carol) == []

    carol.send("/me waves")
    assert bob.expect("#dev * carol waves") == []
    assert carol.expect("#dev * carol waves") == []
    bob.send("/rooms")
    assert bob.expect("*** rooms: #dev (2), #lobby (3)") == []

    carol.close()
    assert alice.expect("*** #lobby: carol left (disconnected)") == []
    assert bob.expect("*** #dev: carol left (disconnected)") == ["*** #lobby: carol left (disconnected)"]

    bob.send("/part")
    assert bob.expect("*** your current room is #lobby") == ["*** #dev: bob left"]
    bob.send("/rooms")
    assert bob.expect("*** rooms: #lobby (2)") == []
    bob.send("/quit off to lunch")
    assert bob.readUntilClosed() == ["*** #lobby: bob left (quit: off to lunch)", "*** bye"]
    assert alice.expect("*** #lobby: bob left (quit: off to lunch)") == []
    alice.send("/who")
    assert alice.expect("*** #lobby: members: alice") == []


def test_badInputLeavesOthersAlone(chatDaemon: Daemon, lineClients: Callable[..., LineClient]) -> None:
    """
    Invalid UTF-8 and a 200 kB line each get one error line; the sender
    stays connected and can chat, and the others see nothing of it.
    """
    port = chatDaemon.ports["line"]
    mallory = named(lineClients(port), "mallory")
    alice = named(lineClients(port), "alice")
    assert mallory.expect("*** #lobby: %s is now known as alice" % (alice.guest,)) == [
        "*** #lobby: %s joined" % (alice.guest,)
    ]

    mallory.sendRaw(b"caf\xe9\r\n")
    assert mallory.expect("!!! invalid UTF-8: line dropped") == []
    mallory.sendRaw(b"A" * 200_000 + b"\n")
    assert mallory.expect("!!! line too long (max 4096 bytes): discarded") == []
    mallory.send("sorry about that")
    assert mallory.expect("#lobby <mallory> sorry about that") == []

    assert alice.expect("#lobby <mallory> sorry about that") == []
    alice.send("no harm done")
    assert alice.expect("#lobby <alice> no harm done") == []
    assert mallory.expect("#lobby <alice> no harm done") == []


def test_stalledReaderIsDropped(startDaemon: Callable[..., Daemon], lineClients: Callable[..., LineClient]) -> None:
    """
    A client that never reads while others chat heavily is dropped once the
    server has queued --max-outgoing bytes for it; that is logged as a slow
    consumer, and the others see it leave and go on chatting undisturbed.
    """
    # Flood control off: the talker floods on purpose, to fill the stalled buffer.
    daemon = startDaemon("--max-outgoing", "65536", "--flood-rate", "0")
    port = daemon.ports["line"]
    talker = named(lineClients(port), "talker")
    listener = named(lineClients(port), "listener")
    talker.expect("*** #lobby: %s is now known as listener" % (listener.guest,))
    stalled = lineClients(port, rcvbuf=4096)
    stalled.send("/nick stalled")
    for c in (talker, listener):
        c.expect(lambda line: line.endswith(" is now known as stalled"))

    padding = "x" * 3000
    deadline = time.monotonic() + 30
    sent = 0
    sawDrop = {"talker": False, "listener": False}
    while not all(sawDrop.values()):
        assert time.monotonic() < deadline, "the stalled client was not dropped; log:\n" + daemon.log
        for _ in range(20):
            talker.send("%05d %s" % (sent, padding))
            sent += 1
        last = "#lobby <talker> %05d %s" % (sent - 1, padding)
        batch = ["#lobby <talker> %05d %s" % (i, padding) for i in range(sent - 20, sent - 1)]
        for c in (talker, listener):
            before = c.expect(last)
            # every message arrives, in order; the only other line can be the drop
            assert [line for line in before if line.startswith("#lobby <talker> ")] == batch
            others = [line for line in before if not line.startswith("#lobby <talker> ")]
            if others:
                assert others == ["*** #lobby: stalled left (too slow)"]
                sawDrop[c.nick] = True

    daemon.waitForLog(r"dropping slow consumer 127\.0\.0\.1:\d+ \(stalled\): over 65536 bytes queued")
    talker.send("still here")
    for c in (talker, listener):
        assert c.expect("#lobby <talker> still here") == []

    # The stalled client's connection is gone: reading it ends, after what
    # the kernel had buffered, in a reset or end-of-stream.
    stalled.sock.settimeout(10)
    try:
        while stalled.sock.recv(1 << 20):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        pytest.fail("the stalled client's connection is still open")


def test_sigtermSaysGoodbye(chatDaemon: Daemon, lineClients: Callable[..., LineClient]) -> None:
    """
    On SIGTERM every client gets C{*** server shutting down} (with a
    jittered hint when to reconnect) and its
    connection is closed; the daemon stops cleanly, without waiting for the
    shutdown timeout.
    """
    port = chatDaemon.ports["line"]
    clients = [lineClients(port) for _ in range(3)]
    for c in clients:
        c.welcome()
    clients[0].send("/join dev")
    clients[0].expect("*** #dev: members: " + clients[0].nick)
    for i, c in enumerate(clients):
        # (the joins after its own reach it together, within a moment)
        for later in clients[i + 1 :]:
            c.expect("*** #lobby: %s joined" % (later.nick,))
        barrier(c)
    chatDaemon.signal(signal.SIGTERM)
    for c in clients:
        [line] = c.readUntilClosed(timeout=10)
        # the reconnect hint is jittered over --drain-spread (10 s) after 1 s
        assert re.match('^\\*\\*\\* server shutting down \\(reconnect in about ([1-9]|1[01]) s\\)$', line), line
    chatDaemon.stop(timeout=4)
    assert chatDaemon.stoppedCleanly, chatDaemon.log
    assert "shutting down: closing 3 connections" in chatDaemon.log
    assert "Traceback" not in chatDaemon.log


def test_sigtermExitStatusIsZero(chatDaemon: Daemon) -> None:
    """
    After SIGTERM the daemon exits with status 0, as docs/operations.md says.
    """
    assert chatDaemon.stop() == 0


def test_portInUse(runTwistd: Callable[..., object]) -> None:
    """
    When the line chat port is taken, twistd says so in one line and exits
    with a non-zero status.
    """
    taken = socket.socket()
    try:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        endpoint = "tcp:%d:interface=127.0.0.1" % (port,)
        result = runTwistd("--line", endpoint, "--web", "none")
    finally:
        taken.close()
    output = result.stdout + result.stderr  # type: ignore[attr-defined]
    assert result.returncode != 0  # type: ignore[attr-defined]
    errors = [line for line in output.splitlines() if "cannot listen" in line]
    assert len(errors) == 1, output
    assert errors[0].endswith("twistd chat: cannot listen on %s: Address already in use" % (endpoint,))
    assert "Traceback" not in output


@pytest.mark.parametrize(
    "args, message",
    [
        (["--colour", "blue"], "twistd chat: option --colour not recognized (see twistd chat --help)"),
        (
            ["--line", "tcp:notaport"],
            "twistd chat: invalid endpoint 'tcp:notaport': invalid literal for int() with base 10: 'notaport'"
            " (see twistd chat --help)",
        ),
        (
            ["--max-line-length", "3"],
            "twistd chat: Parameter type enforcement failed: max-line-length must be between 64 and 1048576,"
            " not 3 (see twistd chat --help)",
        ),
    ],
)
def test_invalidOption(runTwistd: Callable[..., object], args: list[str], message: str) -> None:
    """
    An invalid option makes twistd print one line that says what is wrong
    and exit with a non-zero status, without starting.
    """
    result = runTwistd(*args)
    assert result.returncode != 0  # type: ignore[attr-defined]
    assert result.stderr.splitlines() == [message]  # type: ignore[attr-defined]
    assert "listening" not in result.stdout  # type: ignore[attr-defined]


def test_bellOnMentionsOverTCP(chatDaemon: Daemon, lineClients: Callable[..., LineClient]) -> None:
    """
    Over a real connection (where room messages go out in batches, one
    send() a turn), a line that mentions a user who asked for a bell
    starts with BEL, and only for that user; then /edit and /delete show
    as *** lines to the others.
    """
    port = chatDaemon.ports["line"]
    alice = named(lineClients(port), "alice")
    bob = named(lineClients(port), "bob")
    alice.send("/set bell on")
    alice.expect("*** bell on")
    bob.send("alice: are you there?")
    bob.send("nobody in particular")
    bob.expect("#lobby <bob> nobody in particular")
    # (the lines before the unmentioning one: the bell, for alice only)
    assert alice.expect("#lobby <bob> nobody in particular") == ["\a#lobby <bob> alice: are you there?"]
    bob.send("/edit nobody at all")
    alice.expect('*** #lobby: bob edited "nobody in particular": nobody at all')
    bob.send("/delete")
    alice.expect('*** #lobby: bob deleted "nobody at all"')
