"""
Tests for the service's one settings object (L{twisted_chat.core.settings}):
its values, how C{twistd chat} fills it from its options and a --limits
file, and that the service, its admission and every front-end of the tree
read that same object, which a reload (SIGHUP) changes in place.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import txaio
from twisted.internet.testing import MemoryReactorClock

from twisted_chat.frontends.socketio.engineio import EngineResource
from twisted_chat.core.limits import Admission
from twisted_chat.frontends.line import LineChatFactory
from twisted_chat.core.service import ChatService
from twisted_chat.core.settings import OPTIONS, Settings
from twisted_chat.frontends.websocket import ChatWebSocketFactory
from twisted_chat.frontends.webport import WebPortFactory
from twisted_chat.daemon.app import makeService
from twisted_chat.daemon.control import Daemon
from twisted_chat.daemon.options import LIMIT_NAMES, Options
from twisted_chat.stores.memory import MemoryStore


def test_defaults() -> None:
    """
    A L{Settings} made without arguments has the library's defaults: no
    flood control and no connection limits (C{twistd chat} sets its own,
    see the next test).
    """
    assert Settings().asOptions() == {
        "flood-rate": 0.0,
        "flood-burst": 10.0,
        "flood-kick": 100.0,
        "max-connections": 0,
        "max-per-ip": 0,
        "max-rooms": 50,
        "max-message-length": 4096,
        "max-line-length": 4096,
        "idle-timeout": 600.0,
        "max-outgoing": 1 << 20,
        "history-size": 50,
    }


def test_everyLimitIsAnOption() -> None:
    """
    The settings hold exactly the limits a --limits file may set (and
    SIGHUP reloads), each an option of C{twistd chat}; filled from the
    options, they hold the options' values.
    """
    assert LIMIT_NAMES == tuple(OPTIONS)
    assert sorted(OPTIONS.values()) == sorted(Settings.__slots__)
    options = Options()
    options.parseOptions(["--store", "memory", "--max-per-ip", "7", "--flood-rate", "2.5"])
    settings = Settings.fromOptions(options)
    assert settings.asOptions() == {name: options[name] for name in OPTIONS}
    assert (settings.maxPerHost, settings.floodRate, settings.maxConnections) == (7, 2.5, 10000)


def test_update() -> None:
    """
    L{Settings.update} takes option names, changes the values in place and
    says what changed; a name that is not a limit changes nothing.
    """
    settings = Settings(maxPerHost=5)
    assert settings.update({"max-per-ip": 5, "max-outgoing": 8192, "flood-rate": 1.5}) == {
        "max-outgoing": (1 << 20, 8192),
        "flood-rate": (0.0, 1.5),
    }
    assert (settings.maxPerHost, settings.maxOutgoing, settings.floodRate) == (5, 8192, 1.5)
    with pytest.raises(KeyError):
        settings.update({"history-size": 3, "store": "memory"})
    assert settings.historySize == 50
    assert "max-outgoing=8192" in repr(settings)


def test_serviceAndAdmissionShareSettings() -> None:
    """
    A service reads its limits from its settings: the ones given as
    arguments are put there, an admission given to it lends it its
    settings, and an admission reading other settings is refused.
    """
    settings = Settings(historySize=3)
    service = ChatService(store=MemoryStore(), settings=settings, maxTextLength=100, floodRate=2.0)
    assert service.settings is settings and service.admission.settings is settings
    assert (settings.historySize, settings.maxTextLength, settings.floodRate) == (3, 100, 2.0)
    settings.maxRoomsPerMember = 4
    assert service.maxRoomsPerMember == 4
    service.historySize = 9
    assert settings.historySize == 9
    admission = Admission(maxConnections=3, maxPerHost=2)
    withAdmission = ChatService(store=MemoryStore(), admission=admission)
    assert withAdmission.settings is admission.settings
    assert (withAdmission.settings.maxConnections, withAdmission.settings.maxPerHost) == (3, 2)
    with pytest.raises(ValueError):
        ChatService(store=MemoryStore(), settings=Settings(), admission=Admission())


def test_reloadReachesEveryFrontEnd(tmp_path: Path) -> None:
    """
    In the tree of C{twistd chat}, the service, its admission, the line
    factory, the WebSocket factory (the page, text and json modes) and
    Socket.IO (Engine.IO on polling and WebSocket) all read the service's
    settings; a reload changes that object in place, so each of them sees
    the new values.
    """
    limits = tmp_path / "limits.conf"
    limits.write_text("max-outgoing = 65536\n")
    options = Options()
    options.parseOptions(
        ["--store", "memory", "--metrics", "none", "--line", "tcp:9000", "--web", "tcp:8080", "--limits", str(limits)]
    )
    reactor = MemoryReactorClock()
    saved = txaio.config.loop  # (the web front-end makes the reactor Autobahn's timer loop)
    top = makeService(options, reactor=reactor)
    top.privilegedStartService()
    top.startService()
    try:
        daemon = next(s for s in top if isinstance(s, Daemon))
        chat = daemon.chat
        assert chat is not None
        settings = chat.settings
        factories = {type(f): f for _, f, _, _ in reactor.tcpServers}
        line, port = factories[LineChatFactory], factories[WebPortFactory]
        site = port.site
        # (the WebSocket paths of the web port go to the same factory)
        assert port.upgrades[b"/ws"] is port.upgrades[b"/"] is site.resource.children[b"ws"]._factory  # type: ignore[attr-defined]
        ws = site.resource.children[b"ws"]._factory  # type: ignore[attr-defined]
        engine = site.resource.children[b"socket.io"].engine  # type: ignore[attr-defined]
        assert isinstance(ws, ChatWebSocketFactory)
        assert isinstance(site.resource.children[b"socket.io"], EngineResource)  # type: ignore[attr-defined]
        readers = [chat.admission.settings, line.service.settings, ws.service.settings, engine.settings]
        assert all(reader is settings for reader in readers)
        assert settings.maxOutgoing == 65536

        limits.write_text("max-outgoing = 8192\nmax-line-length = 100\nflood-rate = 1\n")
        daemon.reload()
        assert chat.settings is settings
        assert (settings.maxOutgoing, settings.maxLineLength, settings.floodRate) == (8192, 100, 1.0)
    finally:
        top.stopService()
        txaio.config.loop = saved
