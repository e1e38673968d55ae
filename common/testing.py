"""Helpers for the test suite and the benchmarks, never used by a running service or by `swarm` itself:
throwaway servers for a session, dropping a test database, the URLs of a started system's replicas."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import redis

from common.core.keys import ensure_keypair
from common.swarm.cluster import EmbeddedRedisCluster
from common.swarm.embedded import EmbeddedPostgres, EmbeddedRedis
from common.swarm.supervisor import Swarm


@dataclass
class ThrowawayServers:
    """A PostgreSQL and a Redis of their own, with a token key pair, in one temporary folder."""

    postgres: EmbeddedPostgres
    redis: EmbeddedRedis
    keys_dir: Path
    root: Path


@contextlib.contextmanager
def throwaway_servers(prefix: str, *, durable: bool = False) -> Iterator[ThrowawayServers]:
    """Start both on free ports for a test session or a benchmark; stop them and delete everything after.

    `durable`: PostgreSQL with fsync (for crash tests); without, it is faster and loses nothing unless the
    machine itself goes down. The folder is world-readable: PostgreSQL may run as an unprivileged user.
    """
    root = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(root, 0o755)
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, root, ignore_errors=True)
        postgres = EmbeddedPostgres(root / "postgres", durable=durable).start()
        stack.callback(postgres.stop, mode="immediate")
        redis_server = EmbeddedRedis(root / "redis").start()
        stack.callback(redis_server.stop)
        keys_dir = root / "keys"
        ensure_keypair(keys_dir / "jwt_private.pem", keys_dir / "jwt_public.pem")
        yield ThrowawayServers(postgres, redis_server, keys_dir, root)


class LinkProxy:
    """A TCP relay on a free port to a server on 127.0.0.1, which a test can hold (a network partition).

    A replica frozen with SIGSTOP is no partition: the primary's writes wait in the kernel's socket buffers
    and the replica applies them the moment it thaws, even after the primary died. Here, once `hold()`
    is called, bytes stop crossing; `cut()` then drops whatever was in flight, as a lost link would.
    """

    def __init__(self, target_port: int) -> None:
        self._target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._flowing = threading.Event()
        self._flowing.set()
        self._cut = False
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def hold(self) -> None:
        self._flowing.clear()

    def cut(self) -> None:
        self._cut = True
        self._flowing.set()
        for sock in [self._listener, *self._sockets]:
            with contextlib.suppress(OSError):
                sock.close()

    def _accept(self) -> None:
        while not self._cut:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # the listener closed: cut
            try:
                upstream = socket.create_connection(("127.0.0.1", self._target_port))
            except OSError:
                client.close()  # the target is down; the other side will retry
                continue
            self._sockets += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                self._flowing.wait()  # held: what was read waits here, and is dropped on a cut
                if self._cut:
                    break
                dst.sendall(data)
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.close()


@dataclass
class ReplicatedRedis:
    """A Redis primary and one replica of it (real `redis-server` processes), for fail-over tests.

    The replica replicates through `link`, so a test can partition it from the primary.
    """

    primary: EmbeddedRedis
    replica: EmbeddedRedis
    link: LinkProxy

    def freeze(self, server: EmbeddedRedis) -> None:
        """SIGSTOP: the server holds its connections but answers nothing (a hung or partitioned node)."""
        assert server.process is not None
        server.process.send_signal(signal.SIGSTOP)

    def thaw(self, server: EmbeddedRedis) -> None:
        assert server.process is not None
        server.process.send_signal(signal.SIGCONT)

    def promote_replica(self) -> None:
        """The forced fail-over: the replica stops replicating and takes writes (`REPLICAOF NO ONE`)."""
        with redis.Redis(port=self.replica.port) as client:
            client.execute_command("REPLICAOF", "NO", "ONE")


@contextlib.contextmanager
def replicated_redis(root: Path, timeout_s: float = 15.0) -> Iterator[ReplicatedRedis]:
    """Start a primary and a replica on free ports under `root`; yield once the replica is in sync."""
    with contextlib.ExitStack() as stack:
        primary = EmbeddedRedis(root / "primary").start()
        stack.callback(_stop, primary)
        link = LinkProxy(primary.port)
        stack.callback(link.cut)
        replica = EmbeddedRedis(root / "replica", replica_of=link.port).start()
        stack.callback(_stop, replica)
        deadline = time.monotonic() + timeout_s
        with redis.Redis(port=primary.port, decode_responses=True) as client:
            while not _replica_online(client.info("replication")):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the replica on port {replica.port} did not come in sync")
                time.sleep(0.05)
        yield ReplicatedRedis(primary, replica, link)


def _replica_online(info: dict[str, object]) -> bool:
    slave = info.get("slave0")
    return isinstance(slave, dict) and slave.get("state") == "online"


def _stop(server: EmbeddedRedis) -> None:
    if server.process is not None:
        server.process.send_signal(signal.SIGCONT)  # a frozen server cannot act on SIGTERM
    server.stop()


@contextlib.contextmanager
def embedded_redis_cluster(
    root: Path, primaries: int = 3, replicas_per_primary: int = 1, node_timeout_ms: int = 1000
) -> Iterator[EmbeddedRedisCluster]:
    """A ready Redis Cluster under `root` (a replica per primary by default); every node stopped after.

    The node timeout is short so that a killed primary's replica takes over within about three seconds.
    """
    cluster = EmbeddedRedisCluster(root, primaries, replicas_per_primary, node_timeout_ms)
    try:
        yield cluster.start()
    finally:
        cluster.stop()


async def drop_database(admin_dsn: str, name: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def service_urls(swarm: Swarm) -> dict[str, list[str]]:
    """Service name → the base URLs of its replicas in a started `Swarm` (to call a service directly)."""
    return {spec.name: [c.url for c in swarm.replicas_of(spec.name)] for spec in swarm.services}
