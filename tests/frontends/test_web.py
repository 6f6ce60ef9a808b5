"""
Tests for the web port's HTTP side (L{twisted_chat.frontends.web}): the chat page,
its assets, security headers and 404s, requested over an in-memory
connection to the real C{Site}.
"""

from __future__ import annotations

from html.parser import HTMLParser
from importlib import resources
from urllib.parse import urlsplit

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.test import iosim
from twisted.web.server import Site

from twisted_chat.core.service import ChatService
from twisted_chat.frontends.web import makeSite
from twisted_chat.frontends.websocket import ChatWebSocketFactory
from twisted_chat.stores.memory import MemoryStore

from tests.support.harness import RawClient, Response

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; "
    "object-src 'none'"
)

SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
}


def packaged(name: str) -> bytes:
    """
    The bytes of the package's C{web/NAME}.
    """
    return (resources.files("twisted_chat.frontends") / "page" / name).read_bytes()


@pytest.fixture
def site() -> Site:
    """
    The web port's Site, on a Clock.
    """
    clock = Clock()
    service = ChatService(store=MemoryStore(), clock=clock)
    return makeSite(ChatWebSocketFactory(service), clock=clock)


def request(site: Site, path: str, method: str = "GET") -> Response:
    """
    Make one HTTP/1.1 request to C{site} in memory and parse the response.
    """
    raw = "%s %s HTTP/1.1\r\nHost: localhost:8080\r\nConnection: close\r\n\r\n" % (method, path)
    client = RawClient(raw.encode("ascii"))
    server = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40001))
    assert server is not None
    pump = iosim.connect(
        server,
        iosim.FakeTransport(server, True),
        client,
        iosim.FakeTransport(client, False),
        greet=False,
        clock=site.reactor,  # type: ignore[attr-defined]
    )
    pump.flush()
    assert client.received, "no response"
    return Response(client.received, method)


class _Links(HTMLParser):
    """
    The C{src} and C{href} attributes of a page.
    """

    def __init__(self) -> None:
        HTMLParser.__init__(self)
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href") and value:
                self.links.append(value)


def test_page(site: Site) -> None:
    """
    C{GET /} returns the packaged chat page as UTF-8 HTML.
    """
    response = request(site, "/")
    assert response.status == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.body == packaged("index.html")
    assert b"<title>twisted-chat</title>" in response.body


def test_pageSecurityHeaders(site: Site) -> None:
    """
    The page is served with a strict Content-Security-Policy (scripts and
    styles only from the page's own origin, no framing) and the other
    security headers.
    """
    response = request(site, "/")
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, name


def test_pageHead(site: Site) -> None:
    """
    C{HEAD /} answers with the page's headers and no body.
    """
    response = request(site, "/", "HEAD")
    assert response.status == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["content-length"] == str(len(packaged("index.html")))
    assert response.headers["content-security-policy"] == CSP
    assert response.body == b""


@pytest.mark.parametrize(
    "name, contentType",
    [
        ("app.js", "text/javascript; charset=utf-8"),
        ("style.css", "text/css; charset=utf-8"),
        ("favicon.svg", "image/svg+xml"),
    ],
)
def test_assets(site: Site, name: str, contentType: str) -> None:
    """
    The page's assets are served at the top level with their content types,
    the packaged bytes and the security headers.
    """
    response = request(site, "/" + name)
    assert response.status == 200
    assert response.headers["content-type"] == contentType
    assert response.body == packaged(name)
    for header, value in SECURITY_HEADERS.items():
        assert response.headers.get(header) == value, header


def test_pageLinksResolve(site: Site) -> None:
    """
    Every script, stylesheet and image the page refers to on its own origin
    is served, so the page loads completely.
    """
    parser = _Links()
    parser.feed(request(site, "/").body.decode("utf-8"))
    local = [link for link in parser.links if not urlsplit(link).scheme and not link.startswith("#")]
    assert "app.js" in local and "style.css" in local
    for link in local:
        assert request(site, "/" + link.lstrip("/")).status == 200, link


@pytest.mark.parametrize("path", ["/nope", "/nope/deeper", "/app.js/extra", "/style.css/", "//app.js"])
def test_unknownPath(site: Site, path: str) -> None:
    """
    A path that names no page or asset is a 404, including paths below an
    asset; it never returns an asset or the page.
    """
    response = request(site, path)
    assert response.status == 404
    assert response.body not in (packaged("index.html"), packaged("app.js"), packaged("style.css"))


def test_webSocketPathWithoutUpgrade(site: Site) -> None:
    """
    A plain C{GET /ws} (no WebSocket upgrade) is refused with 426 Upgrade
    Required, not answered with the page.
    """
    response = request(site, "/ws")
    assert response.status == 426
