"""
Tests for the client's TLS (L{twisted_chat.client.tls}) on loopback: the
server's certificate is verified against the system, against C{--cafile},
or not with C{--insecure}.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet.defer import DeferredQueue

from twisted_chat.client.links import connect
from twisted_chat.client.session import ChatClient
from twisted_chat.client.target import Target
from twisted_chat.client.tls import tlsCreator

from tests.support.client import FakeUI, lineServerFactory, stopListening, TIMEOUT


# -- TLS (loopback) --


@pytest.fixture(scope="module")
def selfSigned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """
    A self-signed certificate for C{localhost} (only), and its key.
    """
    from tests.support.tls import writeSelfSignedCertificate

    return writeSelfSignedCertificate(tmp_path_factory.mktemp("tls"), withAddress=False)


@pytest_twisted.ensureDeferred
async def test_tlsVerification(selfSigned: tuple[Path, Path]) -> None:
    """
    Over C{tls://} the server's certificate is verified: refused against
    the system's trust store, accepted with C{--cafile} naming it but only
    for the host name it is for, and accepted unverified with C{--insecure}.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from twisted.internet import reactor
    from twisted.internet.ssl import CertificateOptions

    certPath, keyPath = selfSigned
    options = CertificateOptions(
        privateKey=serialization.load_pem_private_key(keyPath.read_bytes(), None),
        certificate=x509.load_pem_x509_certificate(certPath.read_bytes()),
    )
    received: DeferredQueue[str] = DeferredQueue()
    factory = lineServerFactory(received)
    port = reactor.listenSSL(0, factory, options, interface="127.0.0.1")
    portNumber = port.getHost().port
    try:
        for host, how, failure in [
            ("localhost", {}, "TLS error: certificate verify failed"),
            ("localhost", {"cafile": str(certPath)}, None),
            ("127.0.0.1", {"cafile": str(certPath)}, "TLS error: the server's certificate is not valid for 127.0.0.1"),
            ("127.0.0.1", {"insecure": True}, None),
        ]:
            target = Target("tls", host, portNumber)
            ui = FakeUI()
            client = ChatClient(target, ui, reactor)
            connect(reactor, client, creator=tlsCreator(target, **how))  # type: ignore[arg-type]
            if failure is None:
                client.userLine("secret")
                assert await ui.queue.get().addTimeout(TIMEOUT, reactor) == "#lobby <me> secret"
                assert await received.get().addTimeout(TIMEOUT, reactor) == "secret"
                client.userLine("/quit")
                assert await received.get().addTimeout(TIMEOUT, reactor) == "/quit"
                assert await client.done.addTimeout(TIMEOUT, reactor) == 0, (host, how)
            else:
                assert await client.done.addTimeout(TIMEOUT, reactor) == 1
                assert ui.statuses == ["cannot connect to %s:%d: %s" % (host, portNumber, failure)]
            await factory.lost.get().addTimeout(TIMEOUT, reactor)
    finally:
        await stopListening(port)

