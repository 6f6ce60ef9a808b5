"""
Tests for operability in memory (L{twisted_chat.daemon.ops}, the limits file and
reload of L{twisted_chat.daemon.options} and L{twisted_chat.daemon.control}, the systemd units in C{contrib/systemd}):
what Prometheus scrapes, the health and readiness probes, limits read from a
file and reloaded, and that the units agree with each other.

Time is a L{Clock}; connections are line-chat protocols on string
transports; metrics are read as Prometheus reads them, from the text format.
"""

from __future__ import annotations

import gc
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransportWithDisconnection
from twisted.logger import capturedLogs, formatEvent
from twisted.python.failure import Failure
from twisted.web.server import NOT_DONE_YET, Request

from twisted_chat.frontends.line import LineChatFactory, LineChatProtocol
from twisted_chat.stores.memory import MemoryStore
from twisted_chat.daemon.ops import HealthResource, PrometheusStats, ReadyResource, reasonLabel
from twisted_chat.core.service import ChatService
from twisted_chat.daemon.app import makeService
from twisted_chat.daemon.control import Daemon
from twisted_chat.daemon.options import LIMIT_NAMES, Options, readLimits

from tests.support.components import REPO
from tests.support.lines import MemoryLine

if TYPE_CHECKING:
    from twisted.web.test.requesthelper import DummyRequest


# -- metrics from a chat in memory --------------------------------------------


def scrape(stats: PrometheusStats) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """
    What Prometheus would read from C{stats}: sample name and sorted labels
    -> value, parsed from the text exposition format.
    """
    text = generate_latest(stats.registry).decode("utf-8")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.fixture
def chat() -> tuple[ChatService, PrometheusStats, LineChatFactory]:
    """
    A running chat service with Prometheus stats and a line front-end.
    """
    clock = Clock()
    service = ChatService(store=MemoryStore(), clock=clock, pruneInterval=0)
    stats = PrometheusStats(service)
    service.stats = service.admission.stats = stats
    service.startService()
    return service, stats, LineChatFactory(service, clock=clock)


def test_metricsOfAChat(chat: tuple[ChatService, PrometheusStats, LineChatFactory]) -> None:
    """
    Two line users in #lobby, one of them also in #dev: a message in #lobby
    is one room message and two deliveries, one in #dev one message and one
    delivery; a private message counts as a private message and as no
    delivery. The gauges count members by front-end, connections, rooms and
    memberships; a dropped connection is counted under C{disconnected} and
    leaves the gauges.
    """
    service, stats, factory = chat
    alice, bob = MemoryLine(factory, "192.0.2.1"), MemoryLine(factory, "192.0.2.1")
    alice.sendLine("/nick alice")
    bob.sendLine("/nick bob")
    bob.sendLine("/join dev")
    alice.sendLine("hello")
    bob.sendLine("in dev")
    alice.sendLine("/msg bob psst")
    assert bob.lines()[-3:] == ["#lobby <alice> hello", "#dev <bob> in dev", "*alice* psst"]

    seen = scrape(stats)
    assert seen[("chat_messages_total", (("kind", "room"),))] == 2
    assert seen[("chat_messages_total", (("kind", "private"),))] == 1
    assert seen[("chat_deliveries_total", ())] == 2 + 1
    assert seen[("chat_store_commit_seconds_count", ())] == 3
    assert seen[("chat_members", (("frontend", "line"),))] == 2
    assert seen[("chat_connections", ())] == 2
    assert seen[("chat_rooms", ())] == 2
    assert seen[("chat_room_memberships", ())] == 3
    assert ("chat_disconnects_total", (("reason", "disconnected"),)) not in seen

    alice.transport.loseConnection()
    seen = scrape(stats)
    assert seen[("chat_disconnects_total", (("reason", "disconnected"),))] == 1
    assert seen[("chat_members", (("frontend", "line"),))] == 1
    assert seen[("chat_connections", ())] == 1
    assert seen[("chat_room_memberships", ())] == 2


def test_metricsOfRefusals(chat: tuple[ChatService, PrometheusStats, LineChatFactory]) -> None:
    """
    A connection whose requests had to wait for flood control counts once
    in C{chat_throttled_total} each time it starts waiting; one
    disconnected for having too many waiting is one C{chat_refused_total{
    reason="flood"}}; a connection over the per-address limit is one
    C{too-many-connections}.
    """
    service, stats, factory = chat
    service.floodRate, service.floodBurst, service.floodKick = 1.0, 2.0, 3
    flooder = MemoryLine(factory, "192.0.2.1")
    flooder.lines()
    service.clock.advance(10)  # type: ignore[attr-defined]
    for _ in range(5):
        flooder.sendLine("/who")
    assert len(flooder.lines()) == 2
    for _ in range(3):
        service.clock.advance(1)  # type: ignore[attr-defined]
    assert len(flooder.lines()) == 3
    assert scrape(stats)[("chat_throttled_total", ())] == 1
    service.clock.advance(10)  # type: ignore[attr-defined]
    for _ in range(6):
        flooder.sendLine("/who")
    assert flooder.lines()[-1] == "*** disconnected for flooding: more than 3 requests waiting"

    MemoryLine(factory, "192.0.2.1")
    service.admission.maxPerHost = 1
    refused = MemoryLine(factory, "192.0.2.1")
    assert refused.lines() == ["!!! too many connections from your address (at most 1): close one first"]

    seen = scrape(stats)
    assert seen[("chat_throttled_total", ())] == 2
    assert seen[("chat_refused_total", (("reason", "flood"),))] == 1
    assert seen[("chat_refused_total", (("reason", "too-many-connections"),))] == 1


@pytest.mark.parametrize(
    "reason, label",
    [
        ("quit", "quit"),
        ("quit: gone fishing", "quit"),
        ("disconnected", "disconnected"),
        ("kicked by alice: spam", "kicked"),
        ("banned by alice", "banned"),
        ("server shutting down", "server shutting down"),
        ("anything a client made up", "other"),
    ],
)
def test_disconnectReasonsAreBounded(reason: str, label: str) -> None:
    """
    Disconnect reasons become a fixed set of labels (free text such as a
    quit message or a kicker's nick would make a new time series each).
    """
    assert reasonLabel(reason) == label


# -- probes -------------------------------------------------------------------


class StuckStore(MemoryStore):
    """
    A store whose database thread never answers.
    """

    def ping(self) -> Deferred[None]:
        return Deferred()


def render(resource: object, request: DummyRequest) -> None:
    """
    Render C{request} as Twisted's web server does: a body returned at once
    is written and the request finished.
    """
    result = resource.render(request)  # type: ignore[attr-defined]
    if result is not NOT_DONE_YET:
        request.write(result)
        request.finish()


def getRequest() -> DummyRequest:
    """
    A GET request for a leaf resource. (Imported here: Twisted's request
    helpers import the reactor, which pytest-twisted installs.)
    """
    from twisted.web.test.requesthelper import DummyRequest

    return DummyRequest([b""])


def body(request: DummyRequest) -> object:
    return json.loads(b"".join(request.written))


def test_healthz() -> None:
    """
    C{/healthz} answers 200 with C{{"status": "ok"}}, as JSON that no cache
    keeps.
    """
    request = getRequest()
    render(HealthResource(), request)
    assert (request.responseCode or 200, body(request)) == (200, {"status": "ok"})
    assert request.responseHeaders.getRawHeaders(b"content-type") == [b"application/json"]
    assert request.responseHeaders.getRawHeaders(b"cache-control") == [b"no-store"]


def test_readyzWhenTheStoreAnswers() -> None:
    """
    C{/readyz} answers 200 with the store's state and the number of members
    when the service runs and its store answers.
    """
    service = ChatService(store=MemoryStore(), clock=Clock(), pruneInterval=0)
    service.startService()
    request = getRequest()
    render(ReadyResource(service), request)
    assert request.finished == 1
    assert (request.responseCode or 200, body(request)) == (200, {"status": "ready", "store": "ok", "members": 0})


def test_readyzWhenTheStoreDoesNotAnswer() -> None:
    """
    C{/readyz} waits a second for the store; then, if it has not answered,
    it answers 503 and logs a warning.
    """
    clock = Clock()
    service = ChatService(store=StuckStore(), clock=clock, pruneInterval=0)
    service.startService()
    request = getRequest()
    with capturedLogs() as events:
        render(ReadyResource(service), request)
        clock.advance(0.99)
        assert request.finished == 0
        clock.advance(0.01)
    assert request.finished == 1
    assert request.responseCode == 503
    assert body(request)["status"] == "unavailable"  # type: ignore[index]
    assert [formatEvent(e) for e in events if e.get("log_level").name == "warn"] == [  # type: ignore[union-attr]
        "not ready: the store did not answer (%s)" % (body(request)["store"],)  # type: ignore[index]
    ]


def test_readyzWhileStopping() -> None:
    """
    Once the service is stopping (or before it runs), C{/readyz} answers 503
    C{stopping} at once, without asking the store.
    """
    service = ChatService(store=StuckStore(), clock=Clock(), pruneInterval=0)
    request = getRequest()
    render(ReadyResource(service), request)
    assert (request.responseCode, body(request)) == (503, {"status": "stopping"})

    service.startService()
    service.stopService()
    request = getRequest()
    render(ReadyResource(service), request)
    assert (request.responseCode, body(request)) == (503, {"status": "stopping"})


def test_readyzProberGaveUp() -> None:
    """
    A prober that hangs up before C{/readyz} has its answer (a probe's own
    timeout is often one second too) is simply not answered: no error is
    logged when the answer is ready, only the warning about the store.
    """
    from twisted.web.test.requesthelper import DummyChannel

    clock = Clock()
    service = ChatService(store=StuckStore(), clock=clock, pruneInterval=0)
    service.startService()
    request = Request(DummyChannel())
    request.method, request.uri, request.clientproto = b"GET", b"/readyz", b"HTTP/1.1"
    with capturedLogs() as events:
        assert ReadyResource(service).render(request) is NOT_DONE_YET
        request.connectionLost(Failure(ConnectionDone()))
        clock.advance(1)
        # An error left in a Deferred is logged when it is collected.
        gc.collect()
    assert [e for e in events if e.get("log_failure") is not None or e.get("isError")] == []
    assert [formatEvent(e) for e in events][-1].startswith("not ready: the store did not answer")


# -- limits file and reload ---------------------------------------------------


def test_readLimits(tmp_path: Path) -> None:
    """
    A limits file has C{NAME = VALUE} lines with comments and blank lines;
    values are checked and converted as the options' are.
    """
    path = tmp_path / "limits.conf"
    path.write_text("# production\nmax-per-ip = 3   # behind no proxy\n\nflood-rate=2.5\n")
    assert readLimits(str(path), {}) == {"max-per-ip": 3, "flood-rate": 2.5}


@pytest.mark.parametrize(
    "text, problem",
    [
        ("max-per-ip = lots\n", "line 1: max-per-ip must be a number, not 'lots'"),
        ("# ok\nflood-burst = 0\n", "line 2: flood-burst must be between 1 and 1000000, not 0"),
        ("store = memory\n", "line 1: expected NAME = VALUE with NAME one of flood-rate, "),
        ("max-per-ip 3\n", "line 1: expected NAME = VALUE"),
    ],
)
def test_readLimitsNamesTheLine(tmp_path: Path, text: str, problem: str) -> None:
    """
    The first bad line of a limits file is reported with the file, its line
    number and what is wrong; the options are left as they were.
    """
    path = tmp_path / "limits.conf"
    path.write_text(text)
    options = {"max-per-ip": 50}
    with pytest.raises(ValueError) as caught:
        readLimits(str(path), options)
    assert str(caught.value).startswith("%s %s" % (path, problem))
    assert options == {"max-per-ip": 50}


def daemonTree(*args: str) -> tuple[Daemon, ChatService, LineChatFactory]:
    """
    The service tree of C{twistd chat ARGS} in memory: its process-level
    service, the chat service and the line factory.
    """
    options = Options()
    options.parseOptions(["--store", "memory", "--web", "none", "--metrics", "none", *args])
    top = makeService(options, reactor=MemoryReactorClock())
    daemon = next(s for s in top if isinstance(s, Daemon))
    assert daemon.chat is not None and daemon.lineFactory is not None
    return daemon, daemon.chat, daemon.lineFactory


#: a value for every limit, none of them its default
NEW_LIMITS = {
    "flood-rate": 7.5,
    "flood-burst": 11.0,
    "flood-kick": 21.0,
    "max-connections": 101,
    "max-per-ip": 3,
    "max-rooms": 4,
    "max-message-length": 500,
    "max-line-length": 600,
    "idle-timeout": 30.0,
    "max-outgoing": 1 << 16,
    "history-size": 7,
}


def inEffect(chat: ChatService, lineFactory: LineChatFactory) -> dict[str, object]:
    """
    The limits as the service, its admission and the line front-end read
    them.
    """
    settings = lineFactory.service.settings
    assert settings is chat.settings and chat.admission.settings is settings
    return {
        "flood-rate": chat.floodRate,
        "flood-burst": chat.floodBurst,
        "flood-kick": chat.floodKick,
        "max-connections": chat.admission.maxConnections,
        "max-per-ip": chat.admission.maxPerHost,
        "max-rooms": chat.maxRoomsPerMember,
        "max-message-length": chat.maxTextLength,
        "max-line-length": settings.maxLineLength,
        "idle-timeout": settings.idleTimeout,
        "max-outgoing": settings.maxOutgoing,
        "history-size": chat.historySize,
    }


def test_reloadAppliesEveryLimit(tmp_path: Path) -> None:
    """
    Reloading (SIGHUP) puts every limit of the file into effect, and logs
    what it applied.
    """
    assert sorted(NEW_LIMITS) == sorted(LIMIT_NAMES)
    path = tmp_path / "limits.conf"
    path.write_text("max-per-ip = 1\n")
    daemon, chat, lineFactory = daemonTree("--limits", str(path))
    assert chat.admission.maxPerHost == 1
    path.write_text("".join("%s = %s\n" % item for item in NEW_LIMITS.items()))
    with capturedLogs() as events:
        daemon.reload()
    assert inEffect(chat, lineFactory) == NEW_LIMITS
    assert "reload: limits %r" % (NEW_LIMITS,) in [formatEvent(e) for e in events]


def test_reloadKeepsLimitsOfABrokenFile(tmp_path: Path) -> None:
    """
    A limits file that has become broken is reported on reload, with its
    line, and nothing of it is applied, not even its good lines.
    """
    path = tmp_path / "limits.conf"
    path.write_text("max-per-ip = 2\n")
    daemon, chat, lineFactory = daemonTree("--limits", str(path))
    before = inEffect(chat, lineFactory)
    path.write_text("max-per-ip = 9\nflood-rate = fast\n")
    with capturedLogs() as events:
        daemon.reload()
    assert inEffect(chat, lineFactory) == before
    errors = [formatEvent(e) for e in events if e["log_level"].name == "error"]
    assert errors == [
        "reload: limits not reloaded: %s line 2: flood-rate must be a number, not 'fast'" % (path,)
    ]


# -- systemd units ------------------------------------------------------------


def unitFile(name: str) -> dict[str, dict[str, list[str]]]:
    """
    A systemd unit file: section -> key -> values in order (keys may
    repeat), with backslash-continued lines joined and comments dropped.
    """
    text = (REPO / "contrib" / "systemd" / name).read_text()
    text = re.sub(r"\\\n", " ", text)
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        m = re.fullmatch(r"\[(\w+)\]", line)
        if m is not None:
            current = sections.setdefault(m.group(1), {})
            continue
        key, sep, value = line.partition("=")
        assert sep, "not KEY=VALUE in %s: %r" % (name, line)
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def test_systemdUnitsAgree() -> None:
    """
    The service starts C{twistd -n chat} with the line chat, the web port
    and the metrics port on the socket unit's descriptors 0, 1 and 2, in the
    order of its C{ListenStream}s, which are the daemon's default ports (the
    metrics one on loopback only, as the default); every option it gives is
    an option of C{twistd chat}; reload is SIGHUP.
    """
    service, socketUnit = unitFile("twisted-chat.service"), unitFile("twisted-chat.socket")
    assert service["Unit"]["Requires"] == ["twisted-chat.socket"]
    (execStart,) = service["Service"]["ExecStart"]
    words = execStart.split()
    assert words[0].endswith("/twistd")
    assert words[1:words.index("chat")] == ["-n", "--pidfile="]
    args = words[words.index("chat") + 1 :]
    options = dict(zip(args[::2], args[1::2]))
    assert len(options) * 2 == len(args), args

    known = {name.rstrip("=") for name in Options().longOpt}
    assert {name[2:] for name in options} <= known

    endpoints = [(name, value) for name, value in options.items() if value.startswith("systemd:")]
    assert endpoints == [
        ("--line", "systemd:domain=INET:index=0"),
        ("--web", "systemd:domain=INET:index=1"),
        ("--metrics", "systemd:domain=INET:index=2"),
    ]
    defaults = Options()
    defaults.parseOptions(["--store", "memory"])
    listen = []
    for name in ("line", "web", "metrics"):
        (default,) = defaults[name]
        m = re.fullmatch(r"tcp:(\d+)(?::interface=([\d.]+))?", default)
        assert m is not None, default
        listen.append("%s:%s" % (m.group(2), m.group(1)) if m.group(2) else m.group(1))
    assert listen == ["9000", "8080", "127.0.0.1:9464"]
    assert socketUnit["Socket"]["ListenStream"] == listen
    assert service["Service"]["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert service["Service"]["KillSignal"] == ["SIGTERM"]


def test_statusForAdminsOnly() -> None:
    """
    C{/status} shows a logged-in admin this node, its connections by
    front-end, its rooms and the recent warnings and errors (newest last);
    anyone else is refused with one error line.
    """
    from twisted.logger import Logger, globalLogPublisher

    from twisted_chat.core.stats import RecentErrors

    clock = Clock()
    service = ChatService(store=MemoryStore(), clock=clock, passwords={"boss": "unused"}, admins=["boss"])
    service.recentErrors = errors = RecentErrors()
    service.startService()
    factory = LineChatFactory(service, clock=clock)

    def line() -> tuple[LineChatProtocol, StringTransportWithDisconnection]:
        proto = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5000))
        transport = StringTransportWithDisconnection()
        transport.protocol = proto
        proto.makeConnection(transport)
        return proto, transport

    guest, gt = line()
    gt.clear()
    guest.dataReceived(b"/status\n")
    assert gt.value() == b"!!! only server admins can see the status\n"
    boss, bt = line()
    assert boss.member is not None
    service.nicks.setNick(boss.member, "boss", registeredOk=True)
    boss.member.authenticated = "boss"
    boss.dataReceived(b"/join ops\n")
    globalLogPublisher.addObserver(errors)
    try:
        Logger(namespace="test").error("the disk is on fire")
    finally:
        globalLogPublisher.removeObserver(errors)
    bt.clear()
    boss.dataReceived(b"/status\n")
    lines = bt.value().decode().splitlines()
    assert all(line.startswith("*** notice: status: ") for line in lines)
    text = [line[len("*** notice: status: ") :] for line in lines]
    assert re.match(r"node \S+ pid \d+, up \d+ s", text[0])
    assert text[1] == "connections: 2 open, 2 in the chat (line 2)"
    assert text[2] == "rooms: 2; biggest: #lobby (2), #ops (1)"
    assert text[3] == "recent errors (last 1):"
    assert text[4].endswith("the disk is on fire")
    service.stopService()
