"""
End-to-end tests of the browser page in a real browser: headless Debian
Chromium driven by Playwright (sync API), against the real daemon
(C{twistd chat}) as a subprocess, with a line-chat user on the other side.

The page is loaded through L{DroppingProxy}, a small TCP proxy on loopback,
so that a test can cut the browser's connection for real (the TCP
connections to the browser and to the daemon are both closed under them,
with no WebSocket close handshake) while the daemon keeps running, and
watch the page reconnect by itself through the same proxy.

All Playwright calls run in one worker thread
(L{tests.support.browser.BrowserThread}), because pytest-twisted runs each
test function inside its reactor greenlet, where an asyncio reactor would
clash with Playwright's own event loop; the daemon is a separate process
and no test here uses the reactor. Every wait is bounded: Playwright's by L{browser.BROWSER_TIMEOUT}, the line client's by its
own deadline, the proxy's by L{TIMEOUT}, each browser scenario by
L{browser.SCENARIO_TIMEOUT}.

Screenshots go to C{test-artifacts/} at the top of the repository.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

import pytest

from tests.support.browser import BrowserThread
from tests.support.components import ARTIFACTS
from tests.support.daemon import LOOPBACK
from tests.support.lines import lineUser

try:
    from playwright.sync_api import expect
except ImportError:  # reported by the browserThread fixture (conftest)
    expect = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from tests.support.daemon import Daemon, LineClient, RedisServer
    from playwright.sync_api import (
        BrowserContext,
        ConsoleMessage,
        Dialog,
        Error,
        Locator,
        Page,
        Request,
    )

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.timeout(120)]

#: seconds: bound on every wait of the proxy (a connection, its threads)
TIMEOUT = 10.0
LAPTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}

#: Injected before the page's own script (Playwright init scripts are not
#: subject to the page's CSP): keeps every value <body data-state> takes, so
#: that a short "offline" between two "online"s cannot be missed by polling,
#: and reports CSP violations on the console, where the test collects them.
_INSTRUMENT = """
(() => {
  const states = [];
  Object.defineProperty(window, '__chatStates', { value: states });
  new MutationObserver(() => {
    const s = document.body && document.body.getAttribute('data-state');
    if (s && states[states.length - 1] !== s) states.push(s);
  }).observe(document, { subtree: true, attributes: true, attributeFilter: ['data-state'] });
  document.addEventListener('securitypolicyviolation', (e) => {
    console.error('CSP violation: ' + e.violatedDirective + ' blocked ' + e.blockedURI);
  });
})();
"""


# -- a proxy that can cut connections --


class _Link:
    """
    One proxied connection: the browser's socket and the one to the daemon,
    copied both ways by two threads.
    """

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.sockets = (client, upstream)
        self._running = 2
        self._lock = threading.Lock()

    def start(self) -> None:
        client, upstream = self.sockets
        for src, dst in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pump, args=(src, dst), name="proxy-pump", daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            # One side is gone: so is the other (and this wakes the other pump).
            self.cut()
            with self._lock:
                self._running -= 1
                last = self._running == 0
            if last:
                for s in self.sockets:
                    s.close()

    def cut(self) -> None:
        """
        Close both TCP connections (FIN to both peers); the pumps then end.
        """
        for s in self.sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class DroppingProxy:
    """
    A TCP proxy on 127.0.0.1 (a free port) to C{127.0.0.1:targetPort}.

    L{dropAll} closes every connection it carries while it keeps listening,
    so a client that reconnects comes through it again. While L{hold} is on,
    new connections are accepted but parked (not forwarded) until
    L{release}: the client is then still waiting for the server, which lets a
    test do things "while the client is away" without racing its reconnect.
    """

    def __init__(self, targetPort: int) -> None:
        self.targetPort = targetPort
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self._changed = threading.Condition()
        self._links: list[_Link] = []
        self._parked: list[socket.socket] = []
        self._holding = False
        self._closed = False
        #: how many connections were forwarded, and how many were cut
        self.forwarded = 0
        self.dropped = 0
        self._thread = threading.Thread(target=self._accept, name="proxy-accept", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:  # the listener was closed
                return
            with self._changed:
                if self._closed:
                    client.close()
                    return
                if self._holding:
                    self._parked.append(client)
                    self._changed.notify_all()
                    continue
            self._forward(client)

    def _forward(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.targetPort), timeout=TIMEOUT)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        link = _Link(client, upstream)
        with self._changed:
            if self._closed:
                link.cut()
                client.close()
                upstream.close()
                return
            self._links.append(link)
            self.forwarded += 1
            self._changed.notify_all()
        link.start()

    def dropAll(self) -> int:
        """
        Close every connection carried so far; return how many there were.
        """
        with self._changed:
            links, self._links = self._links, []
            self.dropped += len(links)
        for link in links:
            link.cut()
        return len(links)

    def hold(self) -> None:
        with self._changed:
            self._holding = True

    def waitParked(self, count: int = 1, timeout: float = TIMEOUT) -> None:
        """
        Wait until at least C{count} connections are parked by L{hold}.
        """
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._parked) >= count, timeout):
                raise AssertionError("no connection attempt reached the proxy within %s s" % (timeout,))

    def release(self) -> None:
        """
        Stop holding; forward the parked connections.
        """
        with self._changed:
            self._holding = False
            parked, self._parked = self._parked, []
        for client in parked:
            self._forward(client)

    def close(self) -> None:
        with self._changed:
            self._closed = True
            parked, self._parked = self._parked, []
        # Closing a socket does not wake a thread blocked in its accept();
        # a connection does, and the accept loop sees it is closed.
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=TIMEOUT).close()
        except OSError:
            pass
        self._thread.join(TIMEOUT)
        self.listener.close()
        for client in parked:
            client.close()
        self.dropAll()
        assert not self._thread.is_alive(), "the proxy's accept thread did not stop"


@pytest.fixture
def proxies() -> Iterator[Callable[[int], DroppingProxy]]:
    """
    Start proxies: C{proxies(targetPort)}; all are closed in teardown.
    """
    started: list[DroppingProxy] = []

    def start(targetPort: int) -> DroppingProxy:
        proxy = DroppingProxy(targetPort)
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.close()


# -- the browser --


class BrowserPage:
    """
    A page in a fresh browser context, and everything worth failing a test
    for that the page reported on the side.
    """

    def __init__(self, page: Page) -> None:
        self.page = page
        self.consoleErrors: list[str] = []
        self.pageErrors: list[str] = []
        self.dialogs: list[str] = []
        self.failedRequests: list[str] = []
        page.on("console", self._onConsole)
        page.on("pageerror", self._onPageError)
        page.on("dialog", self._onDialog)
        page.on("requestfailed", self._onRequestFailed)

    def _onConsole(self, message: ConsoleMessage) -> None:
        if message.type in ("error", "assert"):
            self.consoleErrors.append(message.text)

    def _onPageError(self, error: Error) -> None:
        self.pageErrors.append(str(error))

    def _onDialog(self, dialog: Dialog) -> None:
        self.dialogs.append("%s: %s" % (dialog.type, dialog.message))
        dialog.dismiss()

    def _onRequestFailed(self, request: Request) -> None:
        self.failedRequests.append("%s %s: %s" % (request.method, request.url, request.failure))

    @property
    def body(self) -> Locator:
        return self.page.locator("body")

    def messages(self, room: str = "#lobby") -> Locator:
        """
        The rendered (confirmed) chat messages of C{room}.
        """
        return self.page.locator('#views li.msg[data-id][data-room="%s"]' % (room,))

    def states(self) -> list[str]:
        """
        Every value <body data-state> has had since the page loaded.
        """
        return list(self.page.evaluate("() => window.__chatStates.slice()"))

    def login(self, url: str, nick: str) -> None:
        self.page.goto(url)
        self.page.get_by_label("Nickname").fill(nick)
        self.page.get_by_role("button", name="Connect").click()
        expect(self.body).to_have_attribute("data-state", "online")

    def say(self, text: str) -> None:
        field = self.page.get_by_label("Message", exact=True)
        field.fill(text)
        self.page.get_by_role("button", name="Send").click()
        expect(field).to_have_value("")

    def screenshot(self, name: str, viewport: dict[str, int]) -> Path:
        self.page.set_viewport_size(viewport)  # type: ignore[arg-type]
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / name
        self.page.screenshot(path=str(path), animations="disabled", caret="hide")
        return path


@pytest.fixture
def inBrowser(browserThread: BrowserThread) -> Callable[[Callable[[BrowserPage], None]], None]:
    """
    Run a scenario in the browser thread: C{inBrowser(scenario)} calls
    C{scenario(page)} with a fresh context (no stored nickname) and page at
    laptop size, closed afterwards.
    """

    def run(scenario: Callable[[BrowserPage], None]) -> None:
        def inContext(context: BrowserContext) -> None:
            context.add_init_script(_INSTRUMENT)
            scenario(BrowserPage(context.new_page()))

        browserThread.inContext(inContext, viewport=LAPTOP, locale="en-US", timezone_id="UTC")

    return run


# -- helpers --


def pageUrl(port: int) -> str:
    return "http://127.0.0.1:%d/" % (port,)


def messageRecords(messages: Locator) -> list[tuple[int, str, str]]:
    """
    C{(id, sender, text)} of every element in C{messages}, in page order.
    """
    records = []
    for i in range(messages.count()):
        item = messages.nth(i)
        records.append(
            (
                int(item.get_attribute("data-id") or "-1"),
                item.locator(".from").text_content() or "",
                item.locator(".text").text_content() or "",
            )
        )
    return records


# -- the tests --


def test_chatDropAndResume(
    startDaemon: Callable[..., Daemon],
    lineClients: Callable[..., LineClient],
    proxies: Callable[[int], DroppingProxy],
    inBrowser: Callable[[Callable[[BrowserPage], None]], None],
) -> None:
    """
    A browser user and a line user chat in #lobby. The browser's connection
    is cut while the line user keeps talking; the page goes offline,
    reconnects by itself, and shows what was said meanwhile: every message
    exactly once, in order, nothing missing, no gap marker.
    """
    daemon = startDaemon(web=LOOPBACK)
    proxy = proxies(daemon.ports["web"])
    bob = lineUser(lineClients, daemon, "bob")
    meanwhile = ["are you still there?", "I'll keep talking", "third while you were gone", "and a fourth"]
    expected = (
        [("alice", "hi bob, from the browser"), ("bob", "hello alice, from the line")]
        + [("bob", text) for text in meanwhile]
        + [("alice", "back again, did I miss anything?"), ("bob", "yes, see above")]
    )

    def scenario(web: BrowserPage) -> None:
        page = web.page
        web.login(pageUrl(proxy.port), "alice")
        bob.expect("*** #lobby: alice joined")

        # Both ways, before the drop.
        web.say("hi bob, from the browser")
        bob.expect("#lobby <alice> hi bob, from the browser")
        bob.send("hello alice, from the line")
        latest = web.messages().last
        expect(latest.locator(".from")).to_have_text("bob")
        expect(latest.locator(".text")).to_have_text("hello alice, from the line")
        expect(page.get_by_role("button", name="#lobby", exact=True)).to_be_visible()

        # Cut the browser off; its reconnect attempts wait in the proxy
        # until bob has said his piece.
        proxy.hold()
        assert proxy.dropAll() >= 1
        expect(web.body).not_to_have_attribute("data-state", "online")
        bob.expect(lambda line: line.startswith("*** #lobby: alice left"))
        for text in meanwhile:
            bob.send(text)
        for text in meanwhile:
            bob.expect("#lobby <bob> " + text)
        proxy.waitParked()  # the page is trying to reconnect, by itself
        expect(web.body).to_have_attribute("data-state", "connecting")
        expect(web.messages()).to_have_count(2)
        web.screenshot("browser-chat-offline.png", LAPTOP)

        proxy.release()
        expect(web.body).to_have_attribute("data-state", "online")
        bob.expect("*** #lobby: alice joined")
        states = web.states()
        assert states[states.index("online") :] == ["online", "offline", "connecting", "online"], states

        # The conversation goes on.
        web.say("back again, did I miss anything?")
        bob.expect("#lobby <alice> back again, did I miss anything?")
        bob.send("yes, see above")

        messages = web.messages()
        # to_have_text with a list: exactly these elements, in this order.
        expect(messages.locator(".text")).to_have_text([text for _, text in expected])
        expect(messages.locator(".from")).to_have_text([sender for sender, _ in expected])
        records = messageRecords(messages)
        ids = [id for id, _, _ in records]
        assert ids == list(range(ids[0], ids[0] + len(expected))), records
        for id in ids:
            expect(page.locator('#views [data-id="%d"][data-room="#lobby"]' % (id,))).to_have_count(1)
        epochs = {item.get_attribute("data-epoch") for item in messages.all()}
        assert len(epochs) == 1 and "" not in epochs, epochs
        # resumed exactly: no "messages may be missing" marker, nothing pending
        expect(page.locator("#views .sys.gap")).to_have_count(0)
        expect(page.locator("#views li.msg.pending")).to_have_count(0)

        web.screenshot("browser-chat.png", LAPTOP)
        web.screenshot("browser-chat-phone.png", PHONE)
        assert web.pageErrors == [], web.pageErrors
        assert web.dialogs == [], web.dialogs

    inBrowser(scenario)
    assert proxy.forwarded >= 2 and proxy.dropped >= 1


def test_htmlIsText(
    startDaemon: Callable[..., Daemon],
    lineClients: Callable[..., LineClient],
    inBrowser: Callable[[Callable[[BrowserPage], None]], None],
) -> None:
    """
    Markup in a message, from the line chat or typed in the page, is shown
    as literal text: no element is created from it and no script runs.
    """
    daemon = startDaemon(web=LOOPBACK)
    bob = lineUser(lineClients, daemon, "bob")
    markup = "<img src=x onerror=alert(1)><b>bold</b>"
    typed = "<script>alert(2)</script><i>it</i> & <a href=javascript:alert(3)>x</a>"

    def scenario(web: BrowserPage) -> None:
        web.login(pageUrl(daemon.ports["web"]), "alice")
        bob.send(markup)
        bob.expect("#lobby <bob> " + markup)
        web.say(typed)
        bob.expect("#lobby <alice> " + typed)

        expect(web.messages().locator(".text")).to_have_text([markup, typed])
        log = web.page.locator("#views")
        for tag in ("img", "b", "i", "script", "a"):
            expect(log.locator(tag)).to_have_count(0)
        assert web.dialogs == [], web.dialogs
        assert web.pageErrors == [], web.pageErrors
        assert web.consoleErrors == [], web.consoleErrors

    inBrowser(scenario)


def test_loadsCleanAndAccessible(
    startDaemon: Callable[..., Daemon],
    inBrowser: Callable[[Callable[[BrowserPage], None]], None],
) -> None:
    """
    The page loads and connects without console errors, CSP violations,
    uncaught exceptions or failed requests, and its controls have the
    accessible names people (and these tests) find them by.
    """
    daemon = startDaemon(web=LOOPBACK)

    def scenario(web: BrowserPage) -> None:
        page = web.page
        response = page.goto(pageUrl(daemon.ports["web"]))
        assert response is not None and response.ok
        assert "default-src 'self'" in (response.headers.get("content-security-policy") or "")

        expect(page).to_have_title("twisted-chat")
        nickname = page.get_by_label("Nickname")
        expect(nickname).to_be_visible()
        expect(nickname).to_be_editable()
        expect(page.get_by_role("button", name="Connect")).to_be_enabled()
        expect(web.body).to_have_attribute("data-state", "offline")

        nickname.fill("carol")
        nickname.press("Enter")
        expect(web.body).to_have_attribute("data-state", "online")
        message = page.get_by_label("Message", exact=True)
        expect(message).to_be_visible()
        expect(message).to_be_focused()
        expect(page.get_by_role("button", name="Send")).to_be_enabled()
        expect(page.get_by_label("Nickname")).to_have_value("carol")
        expect(page.get_by_role("button", name="#lobby", exact=True)).to_be_visible()
        expect(page.get_by_role("button", name="Leave #lobby")).to_be_attached()
        expect(page.get_by_role("status")).to_have_text("online")

        web.say("all clean")
        expect(web.messages().locator(".text")).to_have_text(["all clean"])

        # The stylesheet really applied (a missing or blocked style.css
        # would leave the composer a plain block).
        assert page.locator("#composer").evaluate("(e) => getComputedStyle(e).display") == "grid"
        assert web.consoleErrors == [], web.consoleErrors
        assert web.pageErrors == [], web.pageErrors
        assert web.failedRequests == [], web.failedRequests

    inBrowser(scenario)


def test_conversation(
    startDaemon: Callable[..., Daemon],
    inBrowser: Callable[[Callable[[BrowserPage], None]], None],
) -> None:
    """
    Two people in two browsers: bob's typing shows on alice's page; his
    mention of her is highlighted; she replies (quoted), reacts from the
    keyboard (who reacted shows on focus), edits and deletes her message,
    and bob sees each; a mention while she is in another room gives #lobby
    a mention badge and an unread count; her search finds a message and
    jumps to it in context; her read position follows her to her phone,
    which shows a "New messages" line where she had stopped reading.
    """
    daemon = startDaemon(web=LOOPBACK)
    url = pageUrl(daemon.ports["web"])

    def scenario(alice: BrowserPage) -> None:
        page = alice.page
        browser = page.context.browser
        assert browser is not None
        other = browser.new_context(viewport=LAPTOP, locale="en-US", timezone_id="UTC")  # type: ignore[arg-type]
        try:
            bob = BrowserPage(other.new_page())
            alice.login(url, "alice")
            bob.login(url, "bob")

            # typing, then a mention
            bob.page.get_by_label("Message", exact=True).fill("@alice lunch at 12?")
            expect(page.locator("#typing")).to_have_text("bob is typing\u2026")
            bob.page.get_by_role("button", name="Send").click()
            question = alice.messages().filter(has=page.locator(".text", has_text="lunch at 12?"))
            expect(question).to_have_class(re.compile(r"\bmention\b"))
            expect(page.locator("#typing")).to_have_text("")

            # a reply, quoted on both pages
            question.hover()
            question.get_by_role("button", name="Reply to bob").click()
            expect(page.locator("#compose-context")).to_contain_text("Replying to bob: @alice lunch at 12?")
            alice.say("yes")
            for who in (alice, bob):
                answer = who.messages().filter(has=who.page.locator(".text", has_text="yes"))
                expect(answer.locator(".quote")).to_have_text("bob @alice lunch at 12?")
                expect(answer.locator(".text")).to_have_text("yes")

            # a reaction, from the keyboard
            react = question.get_by_role("button", name="Add a reaction")
            react.focus()
            page.keyboard.press("Enter")
            expect(page.get_by_role("button", name="React with thumbs up")).to_be_focused()
            page.keyboard.press("Enter")
            chip = bob.messages().filter(has=bob.page.locator(".text", has_text="lunch at 12?")).locator(".reaction")
            expect(chip).to_have_accessible_name("\U0001f44d 1: alice. Add yours")
            chip.focus()
            expect(chip.locator(".who")).to_be_visible()
            expect(chip.locator(".who")).to_have_text("alice")
            expect(question.locator(".reaction")).to_have_attribute("aria-pressed", "true")

            # an edit of her own message
            answer = alice.messages().filter(has=page.locator(".text", has_text="yes"))
            answer.hover()
            answer.get_by_role("button", name="Edit your message").click()
            field = page.get_by_label("Message", exact=True)
            expect(field).to_have_value("yes")
            field.fill("yes, at 12:30")
            field.press("Enter")
            edited = bob.messages().filter(has_text="yes, at 12:30")
            expect(edited.locator(".edited")).to_have_text("(edited)")
            alice.screenshot("browser-conversation.png", LAPTOP)
            alice.screenshot("browser-conversation-phone.png", PHONE)
            page.set_viewport_size(LAPTOP)  # type: ignore[arg-type]

            # a deletion (asked twice)
            answer = alice.messages().filter(has_text="yes, at 12:30")
            answer.hover()
            answer.get_by_role("button", name="Delete your message").click()
            answer.get_by_role("button", name="Really delete your message? Press again to delete").click()
            expect(bob.messages().filter(has_text="message deleted")).to_have_count(1)
            expect(bob.page.locator("#views")).not_to_contain_text("yes, at 12:30")

            # a mention while alice is elsewhere: a badge on #lobby
            page.get_by_label("Room").fill("#dev")
            page.get_by_role("button", name="Join").click()
            expect(page.locator("#view-title")).to_have_text("#dev")
            bob.say("alice: are you there?")
            lobby = page.locator(".nav-item", has=page.get_by_role("button", name="#lobby", exact=True))
            expect(lobby.locator(".mention-badge")).to_have_text("@1 mention")
            expect(lobby.locator(".badge:not(.mention-badge)")).to_have_text("1 unread")

            # search, and jump to the message in context
            page.get_by_role("searchbox", name="Search messages").fill("lunch")
            page.get_by_role("button", name="Search", exact=True).click()
            expect(page.locator("#search-summary")).to_have_text("1 message found")
            page.get_by_role("button", name=re.compile(r"^bob in #lobby: @alice lunch at 12\?")).click()
            expect(page.locator("#view-title")).to_have_text("#lobby")
            expect(question).to_be_focused()
            expect(question).to_have_class(re.compile(r"\bflash\b"))
            alice.screenshot("browser-conversation-search.png", LAPTOP)

            # later, on her phone (the same nick and token): a "New messages"
            # line where she had stopped reading #lobby
            page.close()
            phone = BrowserPage(page.context.new_page())
            phone.page.set_viewport_size(PHONE)  # type: ignore[arg-type]
            phone.page.goto(url)
            expect(phone.body).to_have_attribute("data-state", "online")
            expect(phone.page.locator("#views li.new-divider")).to_have_text("New messages")
            after = phone.page.locator("#views li.new-divider + li.msg .text")
            expect(after).to_have_text("alice: are you there?")
            phone.screenshot("browser-conversation-new-phone.png", PHONE)

            for web in (alice, bob, phone):
                assert web.pageErrors == [], web.pageErrors
                assert web.consoleErrors == [], web.consoleErrors
                assert web.dialogs == [], web.dialogs
        finally:
            other.close()

    inBrowser(scenario)


def test_readFollowsToAnotherTab(
    startDaemon: Callable[..., Daemon],
    lineClients: Callable[..., LineClient],
    inBrowser: Callable[[Callable[[BrowserPage], None]], None],
) -> None:
    """
    Two tabs of alice at once (the same nick and token): a message for her
    in #lobby while the first tab shows #dev gives #lobby an unread count
    and a mention badge there; the second tab, showing #lobby, reads it,
    and the first tab's badges go, without it ever losing its connection.
    """
    daemon = startDaemon(web=LOOPBACK)
    bob = lineUser(lineClients, daemon, "bob")
    url = pageUrl(daemon.ports["web"])

    def scenario(first: BrowserPage) -> None:
        page = first.page
        first.login(url, "alice")
        page.get_by_label("Room").fill("#dev")
        page.get_by_role("button", name="Join").click()
        expect(page.locator("#view-title")).to_have_text("#dev")
        bob.send("alice: are you there?")
        lobby = page.locator(".nav-item", has=page.get_by_role("button", name="#lobby", exact=True))
        expect(lobby.locator(".mention-badge")).to_have_text("@1 mention")
        expect(lobby.locator(".badge:not(.mention-badge)")).to_have_text("1 unread")

        second = BrowserPage(page.context.new_page())
        second.page.goto(url)
        expect(second.body).to_have_attribute("data-state", "online")
        expect(second.page.locator("#view-title")).to_have_text("#lobby")
        expect(lobby.locator(".mention-badge")).to_be_hidden()
        expect(lobby.locator(".badge:not(.mention-badge)")).to_be_hidden()
        assert first.states()[-1] == "online" and "offline" not in first.states(), first.states()

    inBrowser(scenario)


@contextmanager
def stalled(redis: RedisServer) -> Iterator[None]:
    """
    C{with stalled(redis):} the C{redis-server} is stopped (SIGSTOP, by its
    PID: it keeps its connections and answers nothing) for the block, and
    always continued (SIGCONT) afterwards.
    """
    pid = redis.pid
    assert pid is not None, "redis-server is not running"
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


#: ms: bound on the wait for a join's history that Redis does not answer
#: (the server gives up 12 s after the join, see docs/protocol.md, Resume)
HISTORY_GIVES_UP = 30_000


def test_historyHoleFetchedLater(
    startDaemon: Callable[..., Daemon],
    lineClients: Callable[..., LineClient],
    redisServer: RedisServer,
    inBrowser: Callable[[Callable[[BrowserPage], None]], None],
) -> None:
    """
    With C{--broker} on a Redis that stalls, a page joins #dev, where bob
    said three things before: the server cannot read the history and sends
    it empty (C{unavailable}); the page says the history will be fetched.
    Once Redis answers again and bob says something live, the page fetches
    what was said before it by itself: the three earlier messages, in
    order, above the live one, each once, and the system line says they
    were fetched later.
    """
    daemon = startDaemon("--broker", redisServer.url, web=LOOPBACK)
    bob = lineUser(lineClients, daemon, "bob")
    bob.send("/join #dev")
    bob.expect(lambda line: line.startswith("*** #dev: members: "))
    earlier = ["first, before alice came", "second one", "third and last"]
    for text in earlier:
        bob.send(text)
        bob.expect("#dev <bob> " + text)
    live = "said live, once Redis was back"

    def scenario(web: BrowserPage) -> None:
        page = web.page
        web.login(pageUrl(daemon.ports["web"]), "alice")
        dev = web.messages("#dev")
        gaps = page.locator("#views li.sys.gap")
        with stalled(redisServer):
            page.get_by_label("Room").fill("#dev")
            page.get_by_role("button", name="Join").click()
            expect(page.locator("#view-title")).to_have_text("#dev")
            expect(gaps).to_have_text(
                ["The history could not be read now; it will be fetched when the server can read it"],
                timeout=HISTORY_GIVES_UP,
            )
            expect(dev).to_have_count(0)
            web.screenshot("browser-history-waiting.png", LAPTOP)
        bob.expect("*** #dev: alice joined")

        bob.send(live)
        bob.expect("#dev <bob> " + live)
        expect(dev.locator(".text")).to_have_text(earlier + [live])
        records = messageRecords(dev)
        ids = [id for id, _, _ in records]
        assert ids == list(range(ids[0], ids[0] + 4)), records
        assert {sender for _, sender, _ in records} == {"bob"}, records
        # the line, above the fetched messages, says what happened
        expect(gaps).to_have_text(["The history could not be read at first: the messages below were fetched later"])
        assert page.locator("#views li").evaluate_all(
            """(items) => items.filter((li) => li.matches('.sys.gap, li.msg[data-room="#dev"]'))
                .map((li) => li.classList.contains('gap') ? 'gap' : li.dataset.id)"""
        ) == ["gap"] + [str(id) for id in ids]
        web.screenshot("browser-history-fetched.png", LAPTOP)
        assert web.pageErrors == [], web.pageErrors
        assert web.consoleErrors == [], web.consoleErrors

    inBrowser(scenario)


#: Injected before the page's own script (with L{_INSTRUMENT}): keeps every
#: frame the page's WebSocket receives (C{window.__frames}, parsed), and,
#: while C{window.__holdFill} is true, keeps the page's next C{history}
#: request with C{before} from the server (C{window.__sendHeld()} sends it
#: then), so that a test can stall Redis before the server reads it.
_HOLD_FILL = """
(() => {
  const frames = [];
  Object.defineProperty(window, '__frames', { value: frames });
  window.__holdFill = false;
  window.__sendHeld = null;
  const Plain = window.WebSocket;
  window.WebSocket = class extends Plain {
    constructor(...args) {
      super(...args);
      this.addEventListener('message', (e) => { try { frames.push(JSON.parse(e.data)); } catch (err) { /* */ } });
    }
    send(data) {
      let request = null;
      try { request = JSON.parse(data); } catch (err) { /* */ }
      if (window.__holdFill && request && request.type === 'history' && 'before' in request) {
        window.__holdFill = false;
        window.__sendHeld = () => super.send(data);
        return;
      }
      super.send(data);
    }
  };
})();
"""


def test_resumeHoleFetchedOnceReadable(
    startDaemon: Callable[..., Daemon],
    lineClients: Callable[..., LineClient],
    redisServer: RedisServer,
    proxies: Callable[[int], DroppingProxy],
    inBrowser: Callable[[Callable[[BrowserPage], None]], None],
) -> None:
    """
    alice's page is in #lobby with bob (C{--broker}, a real Redis). Its
    connection is cut, bob says 205 things, and Redis stalls while the page
    comes back: its resume gets the history empty (C{unavailable}), and the
    page says the history will be fetched (not that messages may be
    missing). Redis answers again, bob says something live, and the page
    asks for what it missed; Redis stalls again just before that request
    reaches the server, whose answer is C{unavailable} again: the page
    keeps the hole, and asks again on bob's next live message. That answer
    brings the latest 200 of the 205 (the most a request gets), shown once
    each, in order, between what the page showed and the live messages;
    the line above them says that the 5 before may be missing.
    """
    # (bob says his 205 lines at once: no flood control)
    daemon = startDaemon("--broker", redisServer.url, "--flood-rate", "0", web=LOOPBACK)
    proxy = proxies(daemon.ports["web"])
    bob = lineUser(lineClients, daemon, "bob")
    meanwhile = ["said while alice was away, %d" % (n,) for n in range(1, 206)]
    live = ["live, once Redis was back", "live again, Redis back once more"]

    def scenario(web: BrowserPage) -> None:
        page = web.page
        page.add_init_script(_HOLD_FILL)
        web.login(pageUrl(proxy.port), "alice")
        bob.expect("*** #lobby: alice joined")
        web.say("hello from alice")
        bob.expect("#lobby <alice> hello from alice")
        lobby = web.messages()
        gaps = page.locator("#views li.sys.gap")
        expect(lobby.locator(".text")).to_have_text(["hello from alice"])

        proxy.hold()
        assert proxy.dropAll() >= 1
        expect(web.body).not_to_have_attribute("data-state", "online")
        bob.expect(lambda line: line.startswith("*** #lobby: alice left"))
        bob.sendRaw("".join(text + "\n" for text in meanwhile).encode())
        said = [line for line in bob.expect("#lobby <bob> " + meanwhile[-1]) if line.startswith("#lobby <bob> ")]
        assert said == ["#lobby <bob> " + text for text in meanwhile[:-1]], said
        proxy.waitParked()
        with stalled(redisServer):
            proxy.release()
            expect(web.body).to_have_attribute("data-state", "online")
            expect(gaps).to_have_text(
                ["The history could not be read now; it will be fetched when the server can read it"],
                timeout=HISTORY_GIVES_UP,
            )
            expect(lobby.locator(".text")).to_have_text(["hello from alice"])
        bob.expect("*** #lobby: alice joined")

        # The first request for the hole is answered `unavailable`: Redis
        # is stopped before the server gets it.
        page.evaluate("() => { window.__holdFill = true; }")
        bob.send(live[0])
        bob.expect("#lobby <bob> " + live[0])
        page.wait_for_function("() => window.__sendHeld !== null")
        with stalled(redisServer):
            page.evaluate("() => window.__sendHeld()")
            page.wait_for_function(
                """() => window.__frames.some((f) => f.type === 'history' && f.room === '#lobby'
                    && f.reason === 'unavailable' && f.recovered === undefined)""",
                timeout=HISTORY_GIVES_UP,
            )
        expect(lobby.locator(".text")).to_have_text(["hello from alice", live[0]])
        expect(gaps).to_have_text(["The history could not be read now; it will be fetched when the server can read it"])

        # More than 5 s later (the answer took Redis' 10 s): asked again.
        bob.send(live[1])
        bob.expect("#lobby <bob> " + live[1])
        expect(lobby.locator(".text")).to_have_text(["hello from alice", *meanwhile[5:], *live])
        records = messageRecords(lobby)
        ids = [id for id, _, _ in records]
        assert ids == [ids[0]] + list(range(ids[0] + 6, ids[0] + 6 + 202)), records
        expect(gaps).to_have_text(
            [
                "Some messages may be missing here: the history could not be read at first,"
                " and only the latest 200 were fetched"
            ]
        )
        assert page.locator("#views li").evaluate_all(
            """(items) => items.filter((li) => li.matches('.sys.gap, li.msg[data-room="#lobby"]'))
                .map((li) => li.classList.contains('gap') ? 'gap' : li.dataset.id)"""
        ) == [str(ids[0]), "gap"] + [str(id) for id in ids[1:]]
        requests = page.evaluate("() => window.__frames.filter((f) => f.type === 'history').length")
        assert requests == 4, page.evaluate("() => window.__frames.filter((f) => f.type === 'history')")
        gaps.scroll_into_view_if_needed()
        web.screenshot("browser-history-resumed.png", LAPTOP)
        assert web.pageErrors == [], web.pageErrors
        assert web.consoleErrors == [], web.consoleErrors

    inBrowser(scenario)
