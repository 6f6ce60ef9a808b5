"""
Tests for the daemon's side of Socket.IO without sticky routing
(L{twisted_chat.daemon.routing}): the name session ids are owned by, the
address a node advertises, and the C{--advertise} option.
"""

from __future__ import annotations

import socket

import pytest
from twisted.internet.address import IPv4Address, IPv6Address

from twisted_chat.daemon.options import Options
from twisted_chat.daemon.routing import defaultAdvertise, machineName

REDIS = "redis://127.0.0.1:6379/0"


def parse(*args: str) -> Options:
    options = Options()
    options.parseOptions(list(args))
    return options


class _Port:
    def __init__(self, address: object) -> None:
        self.address = address

    def getHost(self) -> object:
        return self.address


def test_workersShareTheirParentsName() -> None:
    """
    Worker I of a parent is given the node id NODE-wI; its sessions are
    owned by NODE (the machine), with I in the session id. A node's own id
    names it otherwise.
    """
    worker = parse("--broker", REDIS, "--worker", "2", "--node-id", "box-w2", "--inherit-fds", "line=3,web=4")
    assert machineName(worker, None) == "box"
    assert machineName(parse("--broker", REDIS, "--node-id", "n-w1x"), None) == "n-w1x"
    assert machineName(parse("--broker", REDIS, "--node-id", "n-w1"), None) == "n-w1"


def test_defaultAdvertise() -> None:
    """
    Without --advertise a node advertises its first web port, on the
    interface it listens on, or its host name for a wildcard.
    """
    config = parse("--broker", REDIS)
    assert defaultAdvertise(config, _Port(IPv4Address("TCP", "127.0.0.1", 8081))) == "127.0.0.1:8081"  # type: ignore[arg-type]
    assert defaultAdvertise(config, _Port(IPv4Address("TCP", "0.0.0.0", 8080))) == "%s:8080" % (socket.gethostname(),)  # type: ignore[arg-type]
    assert defaultAdvertise(config, _Port(IPv6Address("TCP", "::1", 8080))) == "[::1]:8080"  # type: ignore[arg-type]
    assert defaultAdvertise(config, None) is None


@pytest.mark.parametrize("value", ["10.0.0.5:8080", "chat-1.internal:80", "[fd00::5]:8080"])
def test_advertiseOption(value: str) -> None:
    assert parse("--broker", REDIS, "--advertise", value)["advertise"] == value


@pytest.mark.parametrize("value", ["10.0.0.5", ":8080", "host:http", "host:0", "host:70000", "fd00::5:8080", "a/b:80"])
def test_badAdvertise(value: str) -> None:
    """
    A bad --advertise is refused with a one-line reason.
    """
    with pytest.raises(SystemExit) as e:
        parse("--broker", REDIS, "--advertise", value)
    assert "advertise" in str(e.value)


def test_advertiseNeedsBroker() -> None:
    with pytest.raises(SystemExit) as e:
        parse("--advertise", "10.0.0.5:8080")
    assert "--advertise is for nodes sharing --broker" in str(e.value)


def test_advertisedByDefaultIsAPlainListener() -> None:
    """
    The relay speaks plain HTTP: without --advertise a node advertises its
    first tcp: web listener, not an ssl: one before it; with only ssl:
    listeners, nothing. Its sessions' ids name it.
    """
    from types import SimpleNamespace

    from twisted.application.service import MultiService
    from twisted.internet.defer import Deferred
    from twisted.internet.testing import MemoryReactorClock

    from twisted_chat.daemon.routing import RedisNodeDirectory, addRouting
    from twisted_chat.frontends.socketio.engineio import EngineResource, EngineServer
    from twisted_chat.frontends.socketio.engineio.relay import machineKey

    def listener(description: str, host: str, port: int) -> object:
        return SimpleNamespace(description=description, port=_Port(IPv4Address("TCP", host, port)))

    cluster = SimpleNamespace(node="n1", ready=Deferred(), key=lambda *parts: ":".join(("chat",) + parts))
    for listeners, expected in [
        ([listener("ssl:8443", "127.0.0.1", 8443), listener("tcp:8080", "127.0.0.1", 8080)], "127.0.0.1:8080"),
        ([listener("ssl:8443", "127.0.0.1", 8443)], None),
    ]:
        top = MultiService()
        engine = EngineResource(EngineServer(lambda socket: None))  # type: ignore[arg-type, return-value]
        router = addRouting(top, parse("--broker", REDIS), MemoryReactorClock(), cluster, engine, lambda: listeners)  # type: ignore[arg-type]
        [directory] = [s for s in top if isinstance(s, RedisNodeDirectory)]
        assert directory.advertise() == expected
        assert router is not None and engine.router is router
        assert engine.engine.sidSuffix == ".%s." % (machineKey("n1"),)
