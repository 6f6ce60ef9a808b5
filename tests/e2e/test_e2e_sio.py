"""
End-to-end tests of Socket.IO: the real daemon (C{twistd chat}) as a
subprocess, and real third-party clients on loopback:

* the official C{socket.io-client} (npm, 4.x) run by node: C{tests/sio/driver.mjs},
  remote-controlled through its stdin and stdout (one JSON object a line),
  over HTTP long-polling only, WebSocket only, and polling then upgrade;
* the seed tutorial's page (C{tests/sio/socketIoClient.html}, loading
  socket.io-client's browser bundle from C{node_modules}) in headless Debian
  Chromium driven by Playwright, served from its own origin by a small
  static server, cross-origin to the daemon (C{--allow-origin}).

Each chats with a line-chat user in #lobby. Every wait is bounded: node's
output by L{TIMEOUT} per event, node itself by its own lifetime and a kill
in teardown, Playwright by L{browser.BROWSER_TIMEOUT} per wait and
L{browser.SCENARIO_TIMEOUT} per scenario. Node, the npm packages or
Chromium missing fail the test on CI (C{CI=true}) and skip it elsewhere;
C{node_modules} is installed with C{npm ci} when missing (scripts/test.sh
does it too).
"""

from __future__ import annotations

import http.server
import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import pytest

from tests.support.browser import BrowserThread
from tests.support.components import ARTIFACTS, SIO
from tests.support.daemon import LOOPBACK
from tests.support.lines import lineUser
from tests.support.sio import BUNDLE, NodeClient

try:
    from playwright.sync_api import expect
except ImportError:  # reported by the browserThread fixture (conftest)
    expect = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from tests.support.daemon import Daemon, LineClient
    from playwright.sync_api import BrowserContext, Page

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

#: seconds: bound on every single wait (an event, a line)
TIMEOUT = 10.0
WELCOME = re.compile(r"\*\*\* Welcome to twisted-chat, (\S+)! You are in #lobby\.")
TRANSPORTS = ["polling", "websocket", "polling,websocket"]


def webUrl(daemon: Daemon) -> str:
    return "http://127.0.0.1:%d" % (daemon.ports["web"],)


# -- socket.io-client in node --


@pytest.mark.parametrize("transports", TRANSPORTS)
def test_nodeClientChatsWithLineUser(
    startDaemon: Callable[..., Daemon],
    lineClients: Callable[..., LineClient],
    nodeClients: Callable[..., NodeClient],
    transports: str,
) -> None:
    """
    The official socket.io-client connects (over polling, WebSocket, or
    polling upgraded to WebSocket), is greeted like a line user and put in
    #lobby; what it sends with C{socket.send} reaches the line user, what the
    line user says arrives as C{message} events with the same lines; a
    C{say} with an acknowledgement is acked with the message id; when it
    disconnects the line user sees it leave.
    """
    daemon = startDaemon(web=LOOPBACK)
    bob = lineUser(lineClients, daemon, "bob")
    client = nodeClients(webUrl(daemon), transports)
    opened = client.expectEvent("engine-open")
    assert opened["transport"] == transports.split(",")[0]
    welcome = client.expectOn("message", lambda args: WELCOME.match(args[0]) is not None)
    nick = WELCOME.match(welcome[0]).group(1)  # type: ignore[union-attr]
    bob.expect("*** #lobby: %s joined" % (nick,))
    client.expectLine("*** #lobby: members: bob, %s" % (nick,))

    client.send("hello from node, €")
    bob.expect("#lobby <%s> hello from node, €" % (nick,))
    client.expectLine("#lobby <%s> hello from node, €" % (nick,))
    bob.send("hi node")
    client.expectLine("#lobby <bob> hi node")

    [ack] = client.call("say", {"text": "acknowledged"})
    assert ack["ok"] is True and ack["room"] == "#lobby" and isinstance(ack["id"], int) and ack["epoch"]
    bob.expect("#lobby <%s> acknowledged" % (nick,))

    client.send("/join dev")
    client.expectLine("*** #dev: %s joined" % (nick,))
    if transports == "polling,websocket":
        # The upgrade happens in the background, whenever the probe succeeds.
        upgrades = [e for e in client.seen if e["event"] == "upgrade"] or [client.expectEvent("upgrade")]
        assert upgrades[0]["transport"] == "websocket"
        bob.send("after the upgrade")
        client.expectLine("#lobby <bob> after the upgrade")
        [ack] = client.call("say", {"text": "me too", "room": "#lobby"})
        assert ack["ok"] is True
        bob.expect("#lobby <%s> me too" % (nick,))
    else:
        assert not [e for e in client.seen if e["event"] == "upgrade"]

    client.close()
    bob.expect("*** #lobby: %s left (disconnected)" % (nick,))


@pytest.mark.parametrize("transports", ["polling", "websocket"])
def test_nodeClientJsonModeAndResume(
    startDaemon: Callable[..., Daemon],
    lineClients: Callable[..., LineClient],
    nodeClients: Callable[..., NodeClient],
    transports: str,
) -> None:
    """
    With auth C{{mode: "json", nick}} the client gets json mode's events as
    Socket.IO events; after a disconnect it resumes with auth C{since} and
    gets exactly what it missed, C{recovered: true}.
    """
    daemon = startDaemon(web=LOOPBACK)
    bob = lineUser(lineClients, daemon, "bob")
    alice = nodeClients(webUrl(daemon), transports, {"mode": "json", "nick": "alice"})
    [welcome] = alice.expectOn("welcome")
    assert welcome["nick"] == "alice" and welcome["rooms"] == ["#lobby"]
    bob.expect("*** #lobby: alice joined")
    [ack] = alice.call("say", {"text": "hi bob", "ref": "a1"})
    bob.expect("#lobby <alice> hi bob")
    bob.send("hi alice")
    [message] = alice.expectOn("message", lambda args: args[0]["from"] == "bob")
    assert message["text"] == "hi alice" and message["room"] == "#lobby" and message["id"] == ack["id"] + 1
    alice.close()
    bob.expect("*** #lobby: alice left (disconnected)")

    for text in ("while you were away", "and this"):
        bob.send(text)
        bob.expect("#lobby <bob> " + text)
    since = {"#lobby": {"epoch": message["epoch"], "id": message["id"]}}
    again = nodeClients(webUrl(daemon), transports, {"mode": "json", "nick": "alice", "token": welcome["token"], "since": since})
    [history] = again.expectOn("history")
    assert history["recovered"] is True
    assert [(m["from"], m["text"]) for m in history["messages"]] == [("bob", "while you were away"), ("bob", "and this")]


def test_nodeClientRefused(
    startDaemon: Callable[..., Daemon],
    lineClients: Callable[..., LineClient],
    nodeClients: Callable[..., NodeClient],
) -> None:
    """
    A nick that is taken refuses the connection: the client's
    C{connect_error} carries the reason and the json-mode error code.
    """
    daemon = startDaemon(web=LOOPBACK)
    lineUser(lineClients, daemon, "bob")
    client = nodeClients(webUrl(daemon), "websocket", {"mode": "json", "nick": "bob"})
    error = client.expectEvent("connect_error")
    assert error["message"] == "the nickname bob is taken"
    assert error["data"] == {"code": "nick-taken"}


@pytest.mark.parametrize("transports", ["polling", "websocket"])
def test_nodeClientBurstWaitsItsTurn(
    startDaemon: Callable[..., Daemon],
    nodeClients: Callable[..., NodeClient],
    transports: str,
) -> None:
    """
    With the default flood control (5 requests a second, bursts of 10),
    socket.io-client emitting 30 messages at once, over polling or over a
    WebSocket, gets all 30 acknowledged, in order, none refused: those past
    the burst wait their turn (polling: the POST is answered late).
    """
    daemon = startDaemon("--store", "memory", web=LOOPBACK)
    client = nodeClients(webUrl(daemon), transports, {"mode": "json", "nick": "burst"})
    client.expectOn("welcome")
    client.expectOn("history")
    for n in range(30):
        client.command({"op": "emit", "name": "say", "args": [{"text": "burst %d" % (n,)}], "ack": n})
    acks = [client.expect(lambda e: e["event"] == "ack") for _ in range(30)]
    assert [a["ack"] for a in acks] == list(range(30))
    replies = [a["args"][0] for a in acks]
    assert all(r["ok"] for r in replies), replies
    assert [r["id"] for r in replies] == list(range(replies[0]["id"], replies[0]["id"] + 30))
    assert not [e for e in client.seen if e["event"] in ("disconnect", "engine-close")]


# -- the seed's page in Chromium --
# -- the seed's page in Chromium --


class StaticSite:
    """
    The test page, its script and socket.io-client's browser bundle, served
    on loopback from an origin of their own.
    """

    def __init__(self) -> None:
        files = {
            "/socketIoClient.html": (SIO / "socketIoClient.html", "text/html; charset=utf-8"),
            "/socketIoClient.js": (SIO / "socketIoClient.js", "text/javascript; charset=utf-8"),
            "/socket.io.js": (BUNDLE, "text/javascript; charset=utf-8"),
        }

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                entry = files.get(path)
                if entry is None:
                    self.send_error(404)
                    return
                body = entry[0].read_bytes()
                self.send_response(200)
                self.send_header("Content-Type", entry[1])
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = "http://127.0.0.1:%d" % (self.server.server_address[1],)
        self._thread = threading.Thread(target=self.server.serve_forever, name="static-site", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(TIMEOUT)


@pytest.fixture
def staticSite(nodeModules: Path) -> Iterator[StaticSite]:
    site = StaticSite()
    yield site
    site.close()


def inPage(browserThread: BrowserThread, scenario: Callable[[Page, list[str]], None]) -> None:
    """
    Run C{scenario(page, dialogs)} in a fresh context, in the browser thread;
    C{dialogs} collects any alert/confirm the page opens (dismissed).
    """

    def run(context: BrowserContext) -> None:
        page = context.new_page()
        dialogs: list[str] = []

        def onDialog(dialog: Any) -> None:
            dialogs.append(dialog.message)
            dialog.dismiss()

        page.on("dialog", onDialog)
        scenario(page, dialogs)

    browserThread.inContext(run, viewport={"width": 900, "height": 600}, locale="en-US")


@pytest.mark.browser
def test_seedPage(
    startDaemon: Callable[..., Daemon],
    lineClients: Callable[..., LineClient],
    staticSite: StaticSite,
    browserThread: BrowserThread,
) -> None:
    """
    The seed's page works unchanged against the daemon from another origin
    allowed with --allow-origin: it connects (polling, then upgraded to a
    WebSocket), its greeting C{send} reaches the line user in #lobby, the
    line user's words appear in it as the line chat's lines, shown as text
    (markup stays literal), and what is typed in its form is said.
    """
    daemon = startDaemon("--allow-origin", staticSite.origin, web=LOOPBACK)
    bob = lineUser(lineClients, daemon, "bob")
    markup = "<img src=x onerror=alert(1)><b>bold</b>"

    def scenario(page: Page, dialogs: list[str]) -> None:
        page.goto("%s/socketIoClient.html?server=%s/" % (staticSite.origin, webUrl(daemon)))
        expect(page.get_by_role("status")).to_have_text("connected")
        lines = page.locator("#chatroom .line")
        expect(lines.first).to_have_text(WELCOME)
        nick = WELCOME.match(lines.first.text_content() or "").group(1)  # type: ignore[union-attr]
        bob.expect("#lobby <%s> hello,我是ioclient" % (nick,))
        expect(lines.filter(has_text="hello,我是ioclient")).to_have_text(["#lobby <%s> hello,我是ioclient" % (nick,)])

        bob.send(markup)
        expect(lines.last).to_have_text("#lobby <bob> " + markup)
        for tag in ("img", "b"):
            expect(page.locator("#chatroom " + tag)).to_have_count(0)

        page.get_by_label("say").fill("typed in the page")
        page.get_by_role("button", name="say").click()
        bob.expect("#lobby <%s> typed in the page" % (nick,))
        expect(lines.last).to_have_text("#lobby <%s> typed in the page" % (nick,))

        page.wait_for_function("() => iosocket.io.engine.transport.name === 'websocket'")
        bob.send("after the upgrade")
        expect(lines.last).to_have_text("#lobby <bob> after the upgrade")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "socketio-seed-page.png"))
        assert dialogs == [], dialogs

    inPage(browserThread, scenario)


@pytest.mark.browser
def test_seedPageOtherOrigin(
    startDaemon: Callable[..., Daemon],
    staticSite: StaticSite,
    browserThread: BrowserThread,
) -> None:
    """
    Without --allow-origin, a page of another origin cannot connect: its
    polling requests are refused and nobody joins.
    """
    daemon = startDaemon(web=LOOPBACK)

    def scenario(page: Page, dialogs: list[str]) -> None:
        tried: list[str] = []
        page.on("request", lambda r: tried.append(r.url) if "/socket.io/" in r.url else None)
        page.goto("%s/socketIoClient.html?server=%s/" % (staticSite.origin, webUrl(daemon)))
        expect(page.get_by_role("status")).to_have_text(re.compile("^connect_error"))
        assert tried, "the page made no Socket.IO request"
        expect(page.locator("#chatroom .line")).to_have_count(0)

    inPage(browserThread, scenario)
    daemon.waitForLog(r"refused engine\.io request from .*: origin %s not allowed" % (re.escape(staticSite.origin),))
