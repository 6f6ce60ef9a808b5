"""
Property-based tests (hypothesis) of the line chat's framing
(L{twisted_chat.frontends.line}) under untrusted input: every decoded line
handed on, every error answered, in memory with time on a L{Clock}.

The end-to-end barrage against the real daemon is in
tests/e2e/test_e2e_hardening.py.
"""

from __future__ import annotations


from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransportWithDisconnection

from twisted_chat.frontends.line import LineChatProtocol
from twisted_chat.core.service import ChatService
from twisted_chat.core.settings import Settings
from twisted_chat.stores.memory import MemoryStore

from tests.support.fuzz import FUZZ


# -- line framing --------------------------------------------------------------

MAX_LINE = 64


class RecordingLine(LineChatProtocol):
    """
    The real line protocol, recording in order every decoded line its
    framing hands on and every error it answers with.
    """

    def __init__(self, service: ChatService, clock: Clock) -> None:
        service.settings.maxLineLength = MAX_LINE
        LineChatProtocol.__init__(self, service, clock=clock)
        self.seen: list[tuple[str, str]] = []

    def handleText(self, line: str) -> None:
        self.seen.append(("line", line))

    def sendError(self, message: str) -> None:
        self.seen.append(("error", message))
        LineChatProtocol.sendError(self, message)


def lineConnection(protocol: LineChatProtocol) -> StringTransportWithDisconnection:
    address = IPv4Address("TCP", "127.0.0.1", 40001)
    transport = StringTransportWithDisconnection(peerAddress=address)
    transport.protocol = protocol
    protocol.makeConnection(transport)
    return transport


TOO_LONG = "line too long (max %d bytes): discarded" % (MAX_LINE,)
BAD_UTF8 = "invalid UTF-8: line dropped"

#: byte strings that framing must take apart correctly wherever they fall
_TRICKY = [b"\n", b"\r\n", b"\r", b"\xff", b"\xc3", b"\xc3\xa9", b"\xe2\x82", b"/quit\n", b"/join x\n", b"x" * 70]


@FUZZ
@given(chunks=st.lists(st.one_of(st.binary(max_size=150), st.sampled_from(_TRICKY)), max_size=40))
def test_lineFramingNeverRaisesNorOverBuffers(chunks: list[bytes]) -> None:
    """
    Any bytes, cut anywhere, into a real line connection of the real
    service: C{dataReceived} never raises, never holds more than one line's
    worth (the limit and a CR) between calls, and the server only ever
    sends whole lines of valid UTF-8.
    """
    clock = Clock()
    protocol = LineChatProtocol(ChatService(store=MemoryStore(), clock=clock, settings=Settings(maxLineLength=MAX_LINE)), clock=clock)
    transport = lineConnection(protocol)
    for chunk in chunks:
        protocol.dataReceived(chunk)
        assert len(protocol._buffer) <= MAX_LINE + 1
    out = transport.value()
    assert out.endswith(b"\n")
    out.decode("utf-8")


_lineBody = st.one_of(
    st.text(max_size=80).map(lambda s: s.encode("utf-8")),
    st.binary(max_size=80),
    st.sampled_from([b"", b"\r", b"caf\xc3\xa9", b"caf\xc3", b"\xed\xa0\x80", b"y" * MAX_LINE, b"z" * (MAX_LINE + 1)]),
).map(lambda b: b.replace(b"\n", b""))


def expectedFraming(lines: list[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    """
    What the line chat promises for each complete line: at most one CR
    before the LF is dropped; longer than the limit is one "too long"
    error, else invalid UTF-8 is one "invalid UTF-8" error, else the line.
    """
    seen = []
    for body, end in lines:
        line = (body + end)[:-1]
        if line.endswith(b"\r"):
            line = line[:-1]
        if len(line) > MAX_LINE:
            seen.append(("error", TOO_LONG))
            continue
        try:
            seen.append(("line", line.decode("utf-8")))
        except UnicodeDecodeError:
            seen.append(("error", BAD_UTF8))
    return seen


@FUZZ
@given(lines=st.lists(st.tuples(_lineBody, st.sampled_from([b"\n", b"\r\n"])), max_size=25), data=st.data())
def test_lineFramingHandlesEveryCompleteLine(lines: list[tuple[bytes, bytes]], data: st.DataObject) -> None:
    """
    However a stream of lines is cut into segments, every complete line is
    handled exactly once and in order: valid ones as text, too long or
    invalid ones with exactly one error each; nothing is lost or merged.
    """
    stream = b"".join(body + end for body, end in lines)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=20), label="cuts"))
    clock = Clock()
    protocol = RecordingLine(ChatService(store=MemoryStore(), clock=clock), clock)
    lineConnection(protocol)
    start = 0
    for cut in cuts + [len(stream)]:
        protocol.dataReceived(stream[start:cut])
        start = cut
    assert protocol.seen == expectedFraming(lines)

