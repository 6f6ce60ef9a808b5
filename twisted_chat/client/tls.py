# -*- test-case-name: tests.client.test_tls,tests.client.test_cli -*-
"""
TLS for the terminal client (C{tls://}, C{wss://}): how to verify the
server (L{tlsCreator}): the system's trust store, the certificates of
C{--cafile}, or, with C{--insecure}, not at all.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from zope.interface import implementer

from twisted_chat.client.target import Target
from twisted_chat.wire.render import oneLine

if TYPE_CHECKING:
    from OpenSSL.SSL import Connection
    from twisted.internet.ssl import Certificate
    from twisted.protocols.tls import TLSMemoryBIOProtocol

class OptionError(ValueError):
    """
    A command-line option cannot be used; C{str()} says why in one line.
    """


_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


def loadCertificates(path: str) -> list[Certificate]:
    """
    Every PEM certificate in the file at C{path}, as
    L{twisted.internet.ssl.Certificate}s; L{OptionError} if there are none.
    """
    from twisted.internet.ssl import Certificate

    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise OptionError("cannot read --cafile %s: %s" % (path, e.strerror or e))
    blocks = _PEM.findall(data)
    if not blocks:
        raise OptionError("--cafile %s holds no PEM certificate" % (path,))
    try:
        return [Certificate.loadPEM(b) for b in blocks]
    except Exception as e:
        raise OptionError("--cafile %s: bad certificate: %s" % (path, oneLine(str(e)) or type(e).__name__))


@implementer(IOpenSSLClientConnectionCreator)
class InsecureTLS:
    """
    TLS that accepts any certificate (C{--insecure}): encrypted, but not
    authenticated. It still sends the host name (SNI) so virtual hosts work.
    """

    def __init__(self, hostname: str) -> None:
        from twisted.internet.abstract import isIPAddress, isIPv6Address
        from twisted.internet.ssl import CertificateOptions

        self._options = CertificateOptions()
        isIP = isIPAddress(hostname) or isIPv6Address(hostname)
        self._serverName = None if isIP else hostname.encode("idna")

    def clientConnectionForTLS(self, tlsProtocol: TLSMemoryBIOProtocol) -> Connection:
        connection = self._options.clientConnectionForTLS(tlsProtocol)
        if self._serverName is not None:
            connection.set_tlsext_host_name(self._serverName)
        return connection


def tlsCreator(target: Target, insecure: bool = False, cafile: str | None = None) -> IOpenSSLClientConnectionCreator:
    """
    How to start TLS with C{target}: verify its certificate and host name
    against the system's trust store, or against the certificates in
    C{cafile} only; or, with C{insecure}, not at all.
    """
    if insecure:
        return InsecureTLS(target.host)
    from twisted.internet.ssl import optionsForClientTLS, trustRootFromCertificates

    trustRoot = trustRootFromCertificates(loadCertificates(cafile)) if cafile else None
    return optionsForClientTLS(target.host, trustRoot=trustRoot)
