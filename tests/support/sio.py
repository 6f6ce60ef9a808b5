"""
The official socket.io-client (npm, 4.x) in a node process, driven through
its stdin and stdout by tests/sio/driver.mjs (one JSON object a line): a
L{NodeClient}. The C{nodeModules} and C{nodeClients} fixtures of
tests/e2e/conftest.py install and start them.

Nothing here imports the reactor or Twisted.
"""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time
from typing import Any, Callable

from tests.support.components import SIO

DRIVER = SIO / "driver.mjs"
#: socket.io-client's browser bundle
BUNDLE = SIO / "node_modules" / "socket.io-client" / "dist" / "socket.io.js"
#: seconds: bound on every single wait (an event)
TIMEOUT = 10.0


class NodeClient:
    """
    socket.io-client in a node process, driven by JSON lines.
    """

    def __init__(self, url: str, transports: str, auth: dict[str, Any] | None = None) -> None:
        self.proc = subprocess.Popen(
            ["node", str(DRIVER), url, transports, json.dumps(auth)],
            cwd=SIO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        #: everything read so far, for failure messages
        self.seen: list[dict[str, Any]] = []
        self._reader = threading.Thread(target=self._read, name="node-%d" % (self.proc.pid,), daemon=True)
        self._reader.start()
        self._acks = 0

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.events.put(json.loads(raw))
        self.events.put(None)

    def expect(self, match: Callable[[dict[str, Any]], bool], timeout: float = TIMEOUT) -> dict[str, Any]:
        """
        The next event that C{match}es (others are skipped); fails after
        C{timeout} seconds or when node's output ends.
        """
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                event = self.events.get(timeout=max(0.0, left))
            except queue.Empty:
                raise AssertionError("no matching event within %s s; seen:\n%s" % (timeout, self._history()))
            if event is None:
                raise AssertionError("node's output ended; seen:\n%s" % (self._history(),))
            self.seen.append(event)
            if match(event):
                return event

    def _history(self) -> str:
        stderr = ""
        if self.proc.poll() is not None and self.proc.stderr is not None:
            stderr = "\nstderr: " + self.proc.stderr.read().decode("utf-8", "replace")
        return "\n".join(json.dumps(e, ensure_ascii=False) for e in self.seen[-40:]) + stderr

    def expectEvent(self, name: str, timeout: float = TIMEOUT) -> dict[str, Any]:
        return self.expect(lambda e: e["event"] == name, timeout)

    def expectOn(self, name: str, match: Callable[[list[Any]], bool] = lambda args: True) -> list[Any]:
        """
        The arguments of the next server event C{name} that C{match}es.
        """
        return self.expect(lambda e: e["event"] == "on" and e["name"] == name and match(e["args"]))["args"]  # type: ignore[no-any-return]

    def expectLine(self, line: str) -> None:
        """
        Wait for a text-mode C{message} event carrying C{line}.
        """
        self.expectOn("message", lambda args: args == [line])

    def command(self, command: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(command) + "\n").encode("utf-8"))
        self.proc.stdin.flush()

    def send(self, *args: Any) -> None:
        self.command({"op": "send", "args": list(args)})

    def emit(self, name: str, *args: Any) -> None:
        self.command({"op": "emit", "name": name, "args": list(args)})

    def call(self, name: str, *args: Any) -> list[Any]:
        """
        Emit with an acknowledgement callback; return the ack's arguments.
        """
        self._acks += 1
        key = self._acks
        self.command({"op": "emit", "name": name, "args": list(args), "ack": key})
        return self.expect(lambda e: e["event"] == "ack" and e["ack"] == key)["args"]  # type: ignore[no-any-return]

    def close(self) -> None:
        """
        Close the socket and let node exit (killed if it does not).
        """
        if self.proc.poll() is None:
            try:
                self.command({"op": "close"})
                assert self.proc.stdin is not None
                self.proc.stdin.close()
            except (OSError, ValueError):
                pass
            try:
                self.proc.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(TIMEOUT)
        for stream in (self.proc.stdout, self.proc.stderr, self.proc.stdin):
            if stream is not None and not stream.closed:
                try:
                    stream.close()
                except OSError:
                    pass
        self._reader.join(TIMEOUT)
