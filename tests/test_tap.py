"""
Tests for C{twistd chat}: its options (L{twisted_chat.tap.Options}), the
service tree (L{twisted_chat.tap.makeService}) and the plugin.
"""

from __future__ import annotations

import re

import pytest
from twisted.application.service import IServiceMaker, MultiService
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransportWithDisconnection
from twisted.logger import capturedLogs, formatEvent
from twisted.plugin import getPlugins

from twisted_chat._events import Message
from twisted_chat._line import LineChatFactory
from twisted_chat._memstore import MemoryStore
from twisted_chat._service import ChatService
from twisted_chat.tap import Options, makeService


def parse(*args: str) -> Options:
    options = Options()
    options.parseOptions(list(args))
    return options


def parseForTree(*args: str) -> Options:
    """
    Options for building a service tree in memory: no web port and no
    database file in the working directory.
    """
    return parse(*args, "--store", "memory", "--web", "none")


def refused(*args: str) -> str:
    """
    The message C{twistd chat ARGS} exits with.
    """
    with pytest.raises(SystemExit) as e:
        parse(*args)
    message = e.value.code
    assert isinstance(message, str), "exits with a message, not a bare status"
    return message


def lineListeners(reactor: MemoryReactorClock) -> list[tuple[int, LineChatFactory, str]]:
    return [(port, f, interface) for port, f, _, interface in reactor.tcpServers if isinstance(f, LineChatFactory)]


def chatServices(top: MultiService) -> list[ChatService]:
    return [s for s in top if isinstance(s, ChatService)]


# -- options ------------------------------------------------------------------


def test_defaults() -> None:
    """
    Without options the line chat listens on tcp:9000, the web port on
    tcp:8080, messages are kept in chat.sqlite3, with the documented limits.
    """
    options = parse()
    assert options["line"] == ["tcp:9000"]
    assert options["web"] == ["tcp:8080"]
    assert options["store"] == "sqlite:chat.sqlite3"
    assert options["store-sync"] == "full"
    assert options["retain-days"] == 30
    assert options["max-line-length"] == 4096
    assert options["idle-timeout"] == 600
    assert options["max-outgoing"] == 1 << 20
    assert options["history-size"] == 50
    assert options["retain-messages"] == 10000
    assert options["shutdown-timeout"] == 5.0


def test_numbers() -> None:
    """
    Numeric options are parsed as numbers; the idle timeout may be
    fractional or 0 (never).
    """
    options = parse(
        "--max-line-length", "64",
        "--idle-timeout", "0.5",
        "--max-outgoing", "65536",
        "--history-size", "0",
        "--retain-messages", "7",
        "--shutdown-timeout", "0",
    )
    assert (options["max-line-length"], options["idle-timeout"], options["max-outgoing"]) == (64, 0.5, 65536)
    assert (options["history-size"], options["retain-messages"], options["shutdown-timeout"]) == (0, 7, 0)
    assert parse("--idle-timeout", "0")["idle-timeout"] == 0


def test_lineIsRepeatable() -> None:
    """
    --line can be given several times; every endpoint is kept, in order,
    and none is added.
    """
    options = parse("--line", "tcp:9001:interface=127.0.0.1", "--line=unix:/tmp/chat.sock", "--line", "tcp:0")
    assert options["line"] == ["tcp:9001:interface=127.0.0.1", "unix:/tmp/chat.sock", "tcp:0"]


def test_lineNone() -> None:
    """
    --line none switches the line chat off; combined with an address it is
    refused.
    """
    assert parse("--line", "none")["line"] == []
    message = refused("--line", "none", "--line", "tcp:9000")
    assert "--line none cannot be combined with other --line addresses" in message


@pytest.mark.parametrize(
    "endpoint",
    ["tcp:notaport", "tcpp:80", "9000", "tcp:9000:interface=::1", "tcp:9000:bogus=1"],
)
def test_invalidEndpoint(endpoint: str) -> None:
    """
    An endpoint string that does not parse ends twistd with a one-line
    message naming it, without touching the network.
    """
    message = refused("--line", endpoint)
    assert "\n" not in message
    assert message.startswith("twistd chat: invalid endpoint %r" % (endpoint,))
    assert message.endswith("(see twistd chat --help)")


@pytest.mark.parametrize(
    "args, name",
    [
        (["--max-line-length", "63"], "max-line-length"),
        (["--max-line-length", "2000000"], "max-line-length"),
        (["--idle-timeout", "-1"], "idle-timeout"),
        (["--max-outgoing", "100"], "max-outgoing"),
        (["--history-size", "10001"], "history-size"),
        (["--retain-messages", "0"], "retain-messages"),
        (["--shutdown-timeout", "601"], "shutdown-timeout"),
    ],
)
def test_numbersOutOfRange(args: list[str], name: str) -> None:
    """
    A number outside its range ends twistd with a one-line message that
    gives the range.
    """
    message = refused(*args)
    assert "\n" not in message
    assert "%s must be between " % (name,) in message


@pytest.mark.parametrize("args", [["--max-line-length", "lots"], ["--idle-timeout", "soon"]])
def test_notANumber(args: list[str]) -> None:
    """
    A number option given something else ends twistd with a one-line message.
    """
    message = refused(*args)
    assert "\n" not in message
    assert "must be a number" in message


def test_unknownOption() -> None:
    """
    An unknown option ends twistd with one line, not the whole usage text.
    """
    assert refused("--colour", "blue") == "twistd chat: option --colour not recognized (see twistd chat --help)"


# -- the service tree -----------------------------------------------------------


def test_makeServiceBuildsOneChatService() -> None:
    """
    The tree has exactly one chat service, named C{chat}, configured from the
    options and using an in-memory store that keeps the configured number of
    messages.
    """
    options = parseForTree("--line", "none", "--history-size", "7", "--retain-messages", "3", "--shutdown-timeout", "2")
    top = makeService(options, reactor=MemoryReactorClock())
    [chat] = chatServices(top)
    assert top.getServiceNamed("chat") is chat
    assert chat.historySize == 7
    assert chat.shutdownTimeout == 2
    store = chat.store
    assert isinstance(store, MemoryStore)
    for i in range(1, 6):
        store.append(Message("#lobby", i, store.epoch, "alice", "m%d" % (i,), 0.0))
    kept: list[list[Message]] = []
    store.recent("#lobby", 10).addCallback(kept.append)
    assert [m.id for m in kept[0]] == [3, 4, 5]


def test_makeServiceListensOnEveryLineEndpoint() -> None:
    """
    Once started, the tree listens on every --line endpoint with one line
    factory that shares the chat service and carries the limits, and logs
    each listening address.
    """
    reactor = MemoryReactorClock()
    options = parseForTree(
        "--line", "tcp:9001:interface=127.0.0.1",
        "--line", "tcp:9002",
        "--max-line-length", "100",
        "--idle-timeout", "30",
        "--max-outgoing", "8192",
    )
    top = makeService(options, reactor=reactor)
    assert lineListeners(reactor) == []
    with capturedLogs() as events:
        top.privilegedStartService()
        top.startService()
    try:
        listeners = lineListeners(reactor)
        assert [(port, interface) for port, _, interface in listeners] == [(9001, "127.0.0.1"), (9002, "")]
        factory = listeners[0][1]
        assert listeners[1][1] is factory
        [chat] = chatServices(top)
        assert factory.service is chat
        assert (factory.maxLineLength, factory.idleTimeout, factory.maxOutgoing) == (100, 30, 8192)
        assert factory.clock is reactor
        logged = [formatEvent(e) for e in events]
        assert "line listening on tcp:0.0.0.0:9001" in logged
        assert "line listening on tcp:0.0.0.0:9002" in logged
    finally:
        top.stopService()


def test_makeServiceWithLineNoneListensNowhere() -> None:
    """
    With --line none the line chat listens nowhere.
    """
    reactor = MemoryReactorClock()
    top = makeService(parseForTree("--line", "none"), reactor=reactor)
    top.privilegedStartService()
    top.startService()
    try:
        assert lineListeners(reactor) == []
    finally:
        top.stopService()


def test_stoppingTheTreeSaysGoodbye() -> None:
    """
    Stopping the tree closes the line connections with a shutdown notice,
    and is done once they are gone.
    """
    reactor = MemoryReactorClock()
    top = makeService(parseForTree("--line", "tcp:9000"), reactor=reactor)
    top.privilegedStartService()
    top.startService()
    [(_, factory, _)] = lineListeners(reactor)
    proto = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5555))
    transport = StringTransportWithDisconnection()
    transport.protocol = proto
    proto.makeConnection(transport)
    transport.clear()
    d = top.stopService()
    assert re.match('^\\*\\*\\* server shutting down \\(reconnect in about ([1-9]|1[01]) s\\)$', transport.value().decode().rstrip("\n"))
    assert not transport.connected
    done: list[object] = []
    d.addCallback(done.append)
    assert len(done) == 1


# -- the plugin -------------------------------------------------------------------


def test_pluginIsDiscoverable() -> None:
    """
    twistd finds the C{chat} plugin (the project is installed so that
    Twisted's plugin scan sees it), and it uses these options and this
    makeService.
    """
    makers = {p.tapname: p for p in getPlugins(IServiceMaker)}
    assert "chat" in makers
    chat = makers["chat"]
    assert chat.options is Options
    assert chat.makeService is makeService
