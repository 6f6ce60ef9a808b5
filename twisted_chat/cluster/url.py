# -*- test-case-name: tests.cluster.test_redis -*-
"""
Where the cluster's Redis is: the C{--broker} URL (L{parseRedisURL}) and a
blocking probe of it for start-up (L{checkRedis}).
"""

from __future__ import annotations

import os
import socket
import ssl as _ssl
from typing import NamedTuple
from urllib.parse import parse_qs, unquote, urlsplit


class RedisURL(NamedTuple):
    """
    A parsed C{--broker} URL: where Redis is, how to log in, and the
    C{prefix} of every key and channel of this cluster.
    """

    host: str
    port: int
    db: int
    password: str | None
    username: str | None
    tls: bool
    prefix: str
    #: a PEM file of the certificates to trust for rediss:// (default: the system's)
    ca: str | None = None

    def display(self) -> str:
        """
        The URL without its password, for logs and errors.
        """
        return "%s://%s:%d/%d" % ("rediss" if self.tls else "redis", self.host, self.port, self.db)


def parseRedisURL(url: str) -> RedisURL:
    """
    C{redis://[[USER]:PASSWORD@]HOST[:PORT][/DB][?prefix=P]}, C{rediss://}
    for TLS (C{&ca=PEMFILE}: trust these certificates instead of the
    system's). Raises ValueError with a one-line reason.
    """
    try:
        parts = urlsplit(url)
        port = parts.port or 6379
    except ValueError as e:
        raise ValueError("bad Redis URL %r: %s" % (url, e))
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError("bad Redis URL %r: it must start with redis:// or rediss://" % (url,))
    if not parts.hostname:
        raise ValueError("bad Redis URL %r: no host" % (url,))
    path = parts.path.strip("/")
    if path and not path.isdigit():
        raise ValueError("bad Redis URL %r: the database must be a number" % (url,))
    query = parse_qs(parts.query)
    unknown = set(query) - {"prefix", "ca"}
    if unknown:
        raise ValueError("bad Redis URL %r: unknown parameter %s" % (url, ", ".join(sorted(unknown))))
    prefix = query.get("prefix", ["twisted-chat"])[-1]
    if not prefix or any(c.isspace() for c in prefix):
        raise ValueError("bad Redis URL %r: bad prefix" % (url,))
    ca = query.get("ca", [None])[-1]
    if ca is not None:
        if parts.scheme != "rediss":
            raise ValueError("bad Redis URL %r: ca= goes with rediss:// (TLS)" % (url,))
        if not os.path.isfile(ca):
            raise ValueError("bad Redis URL %r: no such file %s" % (url, ca))
    return RedisURL(
        parts.hostname,
        port,
        int(path or 0),
        unquote(parts.password) if parts.password else None,
        unquote(parts.username) if parts.username else None,
        parts.scheme == "rediss",
        prefix,
        ca,
    )


def _resp(*args: str) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a.encode("utf-8")
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


def checkRedis(url: RedisURL, timeout: float = 5.0) -> None:
    """
    A blocking probe for start-up, before the reactor runs: connect, log in,
    select the database and PING. Raises ValueError with a one-line reason.
    """
    where = url.display()
    try:
        sock = socket.create_connection((url.host, url.port), timeout=timeout)
    except OSError as e:
        raise ValueError("cannot reach Redis at %s: %s" % (where, e.strerror or e))
    try:
        if url.tls:
            context = _ssl.create_default_context(cafile=url.ca)
            sock = context.wrap_socket(sock, server_hostname=url.host)
        request = b""
        if url.password is not None:
            request += _resp("AUTH", *([url.username] if url.username else []), url.password)
        request += _resp("SELECT", str(url.db)) + _resp("PING")
        sock.sendall(request)
        expected = request.count(b"*")
        buf = b""
        while buf.count(b"\r\n") < expected:
            chunk = sock.recv(4096)
            if not chunk:
                raise ValueError("Redis at %s closed the connection" % (where,))
            buf += chunk
        for line in buf.split(b"\r\n")[:expected]:
            if line.startswith(b"-"):
                raise ValueError("Redis at %s refused: %s" % (where, line[1:].decode("utf-8", "replace")))
    except OSError as e:
        raise ValueError("cannot reach Redis at %s: %s" % (where, getattr(e, "strerror", None) or e))
    finally:
        sock.close()
