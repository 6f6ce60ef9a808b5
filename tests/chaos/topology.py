"""
The servers under test, started and hurt by the harness: C{twistd chat}
daemons (one on SQLite, two nodes on Redis, or a C{--workers 2} parent),
C{redis-server}, and the proxies in front of them.

Every process is started from the event loop's thread with
C{PR_SET_PDEATHSIG} (it dies with the harness, even a killed one), its
output goes to a log file under the run's folder, every wait has a
deadline, and L{Topology.stop} stops every process it started, by pid.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.support.daemon import RedisReplyError, RedisServer, environment, freeLoopbackPort, twistdCommand
from tests.chaos.journal import DELETED, UPDATE
from tests.chaos.proxy import Proxy

#: seconds a daemon (or redis-server) may take to start serving
START_TIMEOUT = 30.0
#: seconds a daemon may take to exit on SIGTERM (its --shutdown-timeout is 5 s)
STOP_TIMEOUT = 20.0
#: the room prefix of Redis keys (the daemon's default)
PREFIX = "twisted-chat"


def _dieWithParent() -> None:
    # PR_SET_PDEATHSIG = 1: SIGKILL this child when the harness exits.
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)
    except OSError:
        pass


class Process:
    """
    One subprocess whose output (stdout and stderr) is kept in memory and
    appended to C{logPath}; L{waitFor} waits for an output line.
    """

    def __init__(self, name: str, logPath: Path) -> None:
        self.name = name
        self.logPath = logPath
        self.lines: list[str] = []
        #: when each line came (time.monotonic(), as the journal's clock)
        self.stamps: list[float] = []
        self.proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self.starts = 0

    async def spawn(self, command: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
        self.starts += 1
        with open(self.logPath, "a") as f:
            f.write("==== start %d: %s\n" % (self.starts, " ".join(command)))
        self.mark = len(self.lines)
        self.proc = await asyncio.create_subprocess_exec(
            *command,
            cwd=cwd,
            env=env or environment(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            preexec_fn=_dieWithParent,
        )
        self._reader = asyncio.create_task(self._read(self.proc))

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        with open(self.logPath, "a", encoding="utf-8") as f:
            while True:
                try:
                    raw = await proc.stdout.readline()
                except ValueError:  # a line over the stream limit
                    raw = await proc.stdout.read(65536)
                if not raw:
                    break
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                self.lines.append(line)
                self.stamps.append(time.monotonic())
                f.write(line + "\n")
                f.flush()
                self._changed.set()
        self._changed.set()

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def waitFor(self, pattern: str, timeout: float, since: int | None = None) -> re.Match[str]:
        """
        The first output line from index C{since} on (default: this start's
        first line) that matches C{pattern}; fails after C{timeout} seconds
        or when the output ends.
        """
        regex = re.compile(pattern)
        seen = self.mark if since is None else since
        deadline = time.monotonic() + timeout
        while True:
            for i in range(seen, len(self.lines)):
                m = regex.search(self.lines[i])
                if m is not None:
                    return m
            seen = len(self.lines)
            if self._reader is not None and self._reader.done():
                raise RuntimeError("%s: output ended before %r (exit %s)" % (self.name, pattern, self.proc and self.proc.returncode))
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError("%s: no line matching %r within %s s" % (self.name, pattern, timeout))
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except asyncio.TimeoutError:
                pass

    def signal(self, signum: int) -> None:
        if self.running:
            assert self.proc is not None
            self.proc.send_signal(signum)

    async def wait(self, timeout: float) -> int | None:
        if self.proc is None:
            return None
        try:
            await asyncio.wait_for(self.proc.wait(), timeout)
        except asyncio.TimeoutError:
            return None
        if self._reader is not None:
            try:
                await asyncio.wait_for(self._reader, 5)
            except asyncio.TimeoutError:
                pass
        return self.proc.returncode

    async def kill(self) -> None:
        self.signal(signal.SIGKILL)
        await self.wait(10)

    async def terminate(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """
        SIGTERM, then SIGKILL after C{timeout} s; returns the exit status.
        """
        if not self.running:
            return None if self.proc is None else self.proc.returncode
        self.signal(signal.SIGTERM)
        code = await self.wait(timeout)
        if code is None:
            await self.kill()
        return code


def serverPort() -> int:
    """
    A free loopback port below the kernel's ephemeral range: a daemon keeps
    its ports across restarts (the proxies point at them), and a port from
    that range can be taken meanwhile as the source port of some outgoing
    connection (then the restarted daemon cannot listen).
    """
    import random
    import socket

    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    for _ in range(1000):
        port = random.randint(max(1024, low - 12000), low - 1)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    return freeLoopbackPort()


class Redis:
    """
    A redis-server with its append-only file (fsync'ed on every write), on
    a fixed loopback port kept across restarts, reached by the daemons
    through a L{Proxy}.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        executable = shutil.which("redis-server")
        if executable is None:
            raise RuntimeError("redis-server is not installed")
        self.server = RedisServer(folder, persistent=True, executable=executable)
        self.server.port = serverPort()
        self.process = Process("redis", folder / "redis-output.log")
        self.proxy = Proxy("redis", lambda: ("127.0.0.1", self.server.port))
        self.stopped = False

    @property
    def url(self) -> str:
        # CHAOS_REDIS_PROXY=0: the daemons talk to Redis directly (the
        # redis-cut fault then cuts nothing), to tell a proxy's part in a
        # failure
        if os.environ.get("CHAOS_REDIS_PROXY") == "0":
            return "redis://127.0.0.1:%d/0" % (self.server.port,)
        return "redis://127.0.0.1:%d/0" % (self.proxy.port,)

    async def start(self) -> None:
        if self.proxy.port == 0:
            await self.proxy.start()
        await self.process.spawn(self.server.arguments(), self.folder)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                if self.command("PING", timeout=0.5) == "PONG":
                    return
            except (OSError, RedisReplyError):
                pass
            if not self.process.running or time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start: %s" % (self.server.log[-2000:],))
            await asyncio.sleep(0.02)

    def command(self, *args: object, timeout: float = 5.0) -> Any:
        """
        One command on a fresh blocking connection, straight to Redis (not
        through the proxy); used between faults and at the end.
        """
        return self.server.command(*args, decode=True, timeout=timeout)

    async def kill(self) -> None:
        if self.stopped:
            self.process.signal(signal.SIGCONT)
            self.stopped = False
        await self.process.kill()

    def wipe(self) -> None:
        """
        Remove Redis' data files (it must be stopped): the next start is empty.
        """
        for entry in self.folder.iterdir():
            if entry.name.startswith("appendonly") or entry.name.endswith(".rdb"):
                if entry.is_dir():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()

    def pause(self) -> None:
        self.process.signal(signal.SIGSTOP)
        self.stopped = True

    def resume(self) -> None:
        self.process.signal(signal.SIGCONT)
        self.stopped = False

    def streams(self) -> dict[str, list[dict[str, Any]]]:
        """
        Every room's stored messages, read with XRANGE: room -> bodies in
        stream order (each body as the SAY script stored it: r, i, e, n, x…).
        """
        import json

        found: dict[str, list[dict[str, Any]]] = {}
        cursor = "0"
        keys: list[str] = []
        while True:
            cursor, batch = self.command("SCAN", cursor, "MATCH", PREFIX + ":h:*", "COUNT", 1000)
            keys += batch
            if cursor == "0":
                break
        for key in keys:
            room = key[len(PREFIX + ":h:") :]
            entries = self.command("XRANGE", key, "-", "+", timeout=30)
            bodies = []
            for _, fields in entries:
                pairs = dict(zip(fields[0::2], fields[1::2]))
                if "m" in pairs:
                    bodies.append(json.loads(pairs["m"]))
            # (a deleted message and its edits were taken out of the stream:
            # their entries, without text, are in the room's state hash)
            # (all of them: the harness' daemons keep every message, so no
            # entry was trimmed; a deleted FIRST message is older than every
            # entry left in the stream)
            state = self.command("HGETALL", PREFIX + ":st:" + room, timeout=30) or []
            have = {int(b["i"]) for b in bodies}
            for field, value in zip(state[0::2], state[1::2]):
                if field.isdigit() and int(field) not in have:
                    bodies.append(json.loads(value))
            bodies.sort(key=lambda b: int(b["i"]))
            for b in bodies:
                if b.get("t") == "u":
                    b["x"] = UPDATE
                elif b.get("dl") is True:
                    b["x"] = DELETED
            found[room] = bodies
        return found

    def epoch(self) -> str | None:
        return self.command("GET", PREFIX + ":epoch")

    async def close(self) -> None:
        await self.kill()
        await self.proxy.close()


class Node:
    """
    One place clients connect to: a daemon's line and web ports, each
    behind a proxy. C{process} is the daemon (or the --workers parent)
    serving them.
    """

    def __init__(self, name: str, folder: Path, args: list[str]) -> None:
        self.name = name
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.linePort = serverPort()
        self.webPort = serverPort()
        self.args = [
            "--line", "tcp:%d:interface=127.0.0.1" % (self.linePort,),
            "--web", "tcp:%d:interface=127.0.0.1" % (self.webPort,),
            "--metrics", "none",
            *args,
        ]  # fmt: skip
        self.process = Process(name, folder / "twistd.log")
        self.lineProxy = Proxy(name + "-line", lambda: ("127.0.0.1", self.linePort))
        self.webProxy = Proxy(name + "-web", lambda: ("127.0.0.1", self.webPort))
        self.ready = ""

    @property
    def line(self) -> tuple[str, int]:
        return ("127.0.0.1", self.lineProxy.port)

    @property
    def web(self) -> tuple[str, int]:
        return ("127.0.0.1", self.webProxy.port)

    async def start(self) -> None:
        if self.lineProxy.port == 0:
            await self.lineProxy.start()
            await self.webProxy.start()
        await self.process.spawn(twistdCommand(*self.args), self.folder)
        await self.process.waitFor(r"\] line listening on tcp:", START_TIMEOUT)
        await self.process.waitFor(r"\] web listening on tcp:", START_TIMEOUT)
        if self.ready:
            await self.process.waitFor(self.ready, START_TIMEOUT)

    async def close(self) -> None:
        await self.process.terminate()
        await self.lineProxy.close()
        await self.webProxy.close()


#: options every daemon gets. Flood control stays on, with a budget that
#: lets the write-load phase reach a useful rate (200 requests a second)
#: and a burst (20) below the paster's paste (25-30 lines), which must
#: therefore hit it; no limit per address (every client is 127.0.0.1).
#: Retention keeps everything a soak can write (the default keeps the
#: last 10,000 messages a room: a long soak's write load passes that, and
#: the checker would take what retention pruned for lost messages).
COMMON = [
    "--flood-rate", "200", "--flood-burst", "20",
    "--max-per-ip", "0",
    "--shutdown-timeout", "5", "--drain-spread", "2",
    "--retain-messages", "10000000", "--retain-days", "0",
]  # fmt: skip


class Topology:
    """
    The servers of one scenario. C{nodes} are the places clients connect
    to; C{redis} is None on SQLite.
    """

    name = ""
    redis: Redis | None = None

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.nodes: list[Node] = []

    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        """
        Stop every process started (SIGTERM, then SIGKILL), by pid.
        """
        for node in self.nodes:
            try:
                await node.close()
            except Exception:
                pass
        if self.redis is not None:
            await self.redis.close()

    def daemons(self) -> list[Process]:
        return [n.process for n in self.nodes]

    def stored(self) -> tuple[dict[str, list[tuple[str, int, str]]], str | None]:
        """
        What the store holds now: room -> [(epoch, id, text)] in id order,
        and the current epoch.
        """
        raise NotImplementedError


class Single(Topology):
    """
    One daemon on SQLite. The database lives on a small tmpfs of its own
    when one can be mounted (for the disk-full fault).
    """

    name = "single"

    def __init__(self, folder: Path, tmpfs: bool) -> None:
        super().__init__(folder)
        self.storeDir = folder / "store"
        self.storeDir.mkdir(parents=True, exist_ok=True)
        self.mounted = False
        self.mountError = ""
        if tmpfs:
            result = subprocess.run(
                ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(self.storeDir)],
                capture_output=True, text=True, timeout=20,
            )  # fmt: skip
            if result.returncode == 0:
                self.mounted = True
            else:
                self.mountError = (result.stderr or result.stdout).strip() or "mount failed"
        self.db = self.storeDir / "chat.sqlite3"
        self.nodes = [Node("a", folder / "a", ["--store", "sqlite:%s" % (self.db,), *COMMON])]

    async def start(self) -> None:
        await self.nodes[0].start()

    async def stop(self) -> None:
        try:
            await super().stop()
        finally:
            self.unmount()

    def unmount(self) -> None:
        if self.mounted:
            # keep the database for the report: copy it out first
            try:
                for f in self.storeDir.iterdir():
                    if f.name.startswith("chat.sqlite3"):
                        shutil.copy(f, self.folder / f.name)
            except OSError:
                pass
            subprocess.run(["umount", "-l", str(self.storeDir)], capture_output=True, timeout=20)
            self.mounted = False
            self.db = self.folder / "chat.sqlite3"

    def stored(self) -> tuple[dict[str, list[tuple[str, int, str]]], str | None]:
        import sqlite3

        conn = sqlite3.connect("file:%s?mode=ro" % (self.db,), uri=True, timeout=10)
        try:
            epoch = conn.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()
            epoch = epoch[0] if epoch else None
            found: dict[str, list[tuple[str, int, str]]] = {}
            rows = conn.execute(
                "SELECT room, id, CASE WHEN kind != 0 THEN ? WHEN deleted != 0 THEN ? ELSE text END FROM messages "
                "ORDER BY room, id",
                (UPDATE, DELETED),
            )
            for room, id, text in rows:
                found.setdefault(room, []).append((epoch or "", id, text))
            return found, epoch
        finally:
            conn.close()


class _OnRedis(Topology):
    def stored(self) -> tuple[dict[str, list[tuple[str, int, str]]], str | None]:
        assert self.redis is not None
        found: dict[str, list[tuple[str, int, str]]] = {}
        for room, bodies in self.redis.streams().items():
            found[room] = [(b["e"], int(b["i"]), b["x"]) for b in bodies]
        return found, self.redis.epoch()


class Redis2(_OnRedis):
    """
    Two daemons (nodes a and b) on one redis-server.
    """

    name = "redis2"

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self.redis = Redis(folder / "redis")

    async def start(self) -> None:
        assert self.redis is not None
        await self.redis.start()
        for name in ("a", "b"):
            node = Node(name, self.folder / name, ["--broker", self.redis.url, "--node-id", name, *COMMON])
            node.ready = r"node %s: joined the cluster" % (name,)
            self.nodes.append(node)
        await asyncio.gather(*(n.start() for n in self.nodes))


class Workers2(_OnRedis):
    """
    C{--workers 2 --broker redis://…}: one parent, two workers sharing its ports.
    """

    name = "workers2"

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self.redis = Redis(folder / "redis")

    async def start(self) -> None:
        assert self.redis is not None
        await self.redis.start()
        node = Node("w", self.folder / "w", ["--broker", self.redis.url, "--workers", "2", "--node-id", "w", *COMMON])
        node.ready = r"\] twisted-chat \S+ ready: 2 workers"
        self.nodes.append(node)
        await node.start()

    def workerPids(self) -> dict[int, int]:
        found = {}
        for line in self.nodes[0].process.lines:
            m = re.search(r"\] worker (\d+) started \(pid (\d+)\)", line)
            if m is not None:
                found[int(m.group(1))] = int(m.group(2))
        return found


def make(name: str, folder: Path, tmpfs: bool = True) -> Topology:
    if name == "single":
        return Single(folder, tmpfs)
    if name == "redis2":
        return Redis2(folder)
    if name == "workers2":
        return Workers2(folder)
    raise ValueError("unknown topology %r" % (name,))


def canMountTmpfs(folder: Path) -> str:
    """
    Try to mount (and unmount) a small tmpfs on C{folder}: "" if that works,
    else why not.
    """
    folder.mkdir(parents=True, exist_ok=True)
    try:
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)], capture_output=True, text=True, timeout=20
        )
    except (OSError, subprocess.SubprocessError) as e:
        return str(e)
    if result.returncode != 0:
        return (result.stderr or result.stdout).strip() or "mount failed"
    subprocess.run(["umount", str(folder)], capture_output=True, timeout=20)
    return ""



