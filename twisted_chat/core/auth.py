# -*- test-case-name: tests.core.test_auth -*-
"""
Registered nicknames: a password file, scrypt hashes, constant-time checks.

The file has one C{nick:hash} line per registered nick (blank lines and
lines starting with C{#} are ignored). Make a line with::

    twisted-chat-passwd NICK >> users.txt

Hashes are C{scrypt$N$r$p$SALT$HASH} (base64), from the standard library's
C{hashlib.scrypt}; checking one takes tens of milliseconds of CPU on purpose,
so the service runs it in a thread, never in the reactor.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import hmac
import os
import sys

from twisted_chat.core.names import checkNick, nickKey

_N, _R, _P = 2**14, 8, 1


class AuthFileError(Exception):
    """
    The password file cannot be used; the message says where and why.
    """


def hashPassword(password: str, salt: bytes | None = None, n: int = _N, r: int = _R, p: int = _P) -> str:
    salt = os.urandom(16) if salt is None else salt
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=32)
    return "scrypt$%d$%d$%d$%s$%s" % (
        n,
        r,
        p,
        base64.b64encode(salt).decode("ascii"),
        base64.b64encode(digest).decode("ascii"),
    )


def _parse(encoded: str) -> tuple[int, int, int, bytes, bytes]:
    scheme, n, r, p, salt, digest = encoded.split("$")
    if scheme != "scrypt":
        raise ValueError("unknown hash scheme %r" % (scheme,))
    return int(n), int(r), int(p), base64.b64decode(salt, validate=True), base64.b64decode(digest, validate=True)


def verifyPassword(password: str, encoded: str) -> bool:
    """
    Does C{password} match C{encoded}? The comparison takes the same time
    whatever the answer.
    """
    try:
        n, r, p, salt, digest = _parse(encoded)
    except ValueError:
        return False
    candidate = hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=len(digest), maxmem=256 * 1024 * 1024
    )
    return hmac.compare_digest(candidate, digest)


def loadPasswords(path: str) -> dict[str, str]:
    """
    Read a password file: nick key -> encoded hash.
    """
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise AuthFileError("cannot read %s: %s" % (path, e.strerror or e))
    except UnicodeDecodeError:
        raise AuthFileError("%s is not UTF-8 text" % (path,))
    users: dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        nick, sep, encoded = line.partition(":")
        try:
            if not sep:
                raise ValueError("expected NICK:HASH")
            checkNick(nick)
            _parse(encoded)
        except Exception as e:
            raise AuthFileError("%s line %d: %s" % (path, number, e))
        users[nickKey(nick)] = encoded
    return users


def main(argv: list[str] | None = None) -> int:
    """
    C{twisted-chat-passwd NICK}: read a password (twice) and print the line
    to add to the password file.
    """
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: twisted-chat-passwd NICK  (prints NICK:HASH for the --auth file)", file=sys.stderr)
        return 2
    try:
        nick = checkNick(args[0])
    except Exception as e:
        print("twisted-chat-passwd: %s" % (e,), file=sys.stderr)
        return 2
    if sys.stdin.isatty():
        password = getpass.getpass("password for %s: " % (nick,))
        if getpass.getpass("again: ") != password:
            print("twisted-chat-passwd: the passwords differ", file=sys.stderr)
            return 1
    else:
        password = sys.stdin.readline().rstrip("\n")
    if not password:
        print("twisted-chat-passwd: empty password", file=sys.stderr)
        return 1
    print("%s:%s" % (nick, hashPassword(password)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
