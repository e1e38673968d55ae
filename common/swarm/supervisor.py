"""`swarm up`'s machinery: start Redis, PostgreSQL, every service and the gateway; watch; stop in order.

`Swarm(SwarmConfig(...)).start()` brings the whole system up and returns once every process answers
ready; `stop()` takes it down: gateway first (no new requests), then the services (consumers drain,
outboxes flush), then PostgreSQL and Redis (which flushes its AOF). The CLI wraps it with signal
handling and a table of URLs; the end-to-end tests use it directly with the session's servers.

Without external URLs the servers are embedded in the data folder and keep their data and, when they
are still free, their ports across restarts. What was started is written to `<data-dir>/state.json`,
which also lets the next `swarm up` clean up after one that was killed without a chance to stop.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from common.contracts import topology
from common.contracts.topology import ServiceSpec
from common.core.keys import ensure_keypair
from common.swarm.procs import ChildProcess, LogPrinter
from common.swarm.servers import PortPicker, StartupError, SwarmServers, port_available, stop_leftovers
from common.swarm.state import ProcessState, ServiceState, SwarmState, load_state, process_cmdline, save_state

__all__ = ["StartupAborted", "StartupError", "Swarm", "SwarmConfig"]

# Services that sign tokens get the private key; everyone else only the public one.
TOKEN_SIGNERS = frozenset({"auth_svc"})


class StartupAborted(RuntimeError):
    """A stop was requested (Ctrl-C, SIGTERM) before the system was ready."""


@dataclass
class SwarmConfig:
    data_dir: Path = Path(".swarm")
    gateway_port: int = 8080
    gateway_workers: int = 1  # gateway processes sharing its port (SO_REUSEPORT)
    replicas: Mapping[str, int] = field(default_factory=dict)
    redis_url: str | None = None  # an external Redis; None: embedded in the data folder
    postgres_url: str | None = None  # an external server's admin DSN; None: embedded
    keys_dir: Path | None = None  # default: <data_dir>/keys
    database_suffix: str = ""  # keeps several systems apart on one server (tests)
    host: str = "127.0.0.1"
    log_format: str | None = None  # None: LOG_FORMAT if set, else console on a terminal and json when piped
    env: Mapping[str, str] = field(default_factory=dict)  # extra variables for every child
    ready_timeout_s: float = 60.0
    stop_timeout_s: float = 20.0
    restart_crashed: bool = False
    # None: what `common.contracts.topology` finds installed (and its gateway). Given: exactly these, and
    # `gateway_spec` as given (None: no gateway).
    services: Sequence[ServiceSpec] | None = None
    gateway_spec: ServiceSpec | None = None


class Swarm:
    """The whole system on one machine, as separate processes."""

    def __init__(self, config: SwarmConfig, printer: LogPrinter | None = None) -> None:
        self.config = config
        self.printer = printer or LogPrinter()
        self.data_dir = config.data_dir.resolve()
        self.keys_dir = (config.keys_dir or self.data_dir / "keys").resolve()
        if config.services is None:
            self.services = topology.services()
            self.gateway_spec = topology.gateway()
        else:
            self.services = list(config.services)
            self.gateway_spec = config.gateway_spec
        self.children: list[ChildProcess] = []
        self.servers = SwarmServers(self.data_dir, config.redis_url, config.postgres_url)
        self._previous: SwarmState | None = None
        self._stop_requested = threading.Event()
        self._force = threading.Event()
        self._stopped = False
        self._owns_state = False
        self._restart_at: dict[str, float] = {}
        self._ports = PortPicker(reserved=[config.gateway_port])
        self._started_at = datetime.now(UTC).isoformat(timespec="seconds")

    # -- public -------------------------------------------------------------------------------------

    @property
    def gateway(self) -> ChildProcess | None:
        return next(iter(self.gateway_workers), None)

    @property
    def gateway_workers(self) -> list[ChildProcess]:
        """The gateway's processes; all listen on the gateway's port."""
        return [c for c in self.children if c.spec == self.gateway_spec]

    @property
    def gateway_url(self) -> str | None:
        return self.gateway.url if self.gateway else None

    def replicas_of(self, name: str) -> list[ChildProcess]:
        return [c for c in self.children if c.spec.name == name and c.spec != self.gateway_spec]

    @property
    def redis_url(self) -> str:
        return self.servers.redis_url

    def database_name_of(self, spec: ServiceSpec) -> str | None:
        return None if spec.database is None else spec.database + self.config.database_suffix

    def database_url_of(self, spec: ServiceSpec) -> str | None:
        name = self.database_name_of(spec)
        return None if name is None else self.servers.database_url(name)

    def start(self) -> SwarmState:
        """Bring everything up and wait until it is ready; on any failure, take it all down again."""
        try:
            self._prepare()
            self.servers.start(self._previous, self._ports, self.printer)
            self._check_abort()
            self.servers.create_databases(filter(None, map(self.database_name_of, self.services)))
            ensure_keypair(self.keys_dir / "jwt_private.pem", self.keys_dir / "jwt_public.pem")
            self._spawn_all()
            self._save("starting")
            self._wait_ready()
            return self._save("running")
        except BaseException:
            self.stop()
            raise

    def request_stop(self) -> None:
        self._stop_requested.set()

    def force_stop(self) -> None:
        self._force.set()
        self._stop_requested.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop_requested.is_set()

    def supervise(self, poll_s: float = 0.5) -> None:
        """Block until a stop is requested, noting (and, if configured, restarting) crashed children."""
        while not self._stop_requested.wait(poll_s):
            self.check_children()

    def check_children(self) -> None:
        now = time.monotonic()
        for child in self.children:
            if child.running() or child.process is None:
                continue
            due = self._restart_at.get(child.label)
            if due is None:
                child.join_output()
                self.printer.note(f"{child.label} exited with code {child.returncode}")
                if not self.config.restart_crashed:
                    child.process = None
                    continue
                # Back off on a crash loop; a child that ran a while since its last crash starts fresh.
                if now - child.started_at > 60:
                    child.restarts = 0
                delay = min(30.0, 2.0**child.restarts)
                self._restart_at[child.label] = now + delay
                self.printer.note(f"restarting {child.label} in {delay:.0f}s")
            elif now >= due:
                del self._restart_at[child.label]
                child.restarts += 1
                child.start(self.printer)
                self._save("running")

    def stop(self, force: bool = False) -> None:
        """Stop children (gateway first), then PostgreSQL, then Redis. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        if force:
            self._force.set()
        gateway = [c for c in self.children if c.spec == self.gateway_spec]
        self._stop_children(gateway)
        self._stop_children([c for c in self.children if c not in gateway])
        self.servers.stop(force=self._force.is_set())
        if self._owns_state:  # not when we refused to start because another swarm owns this folder
            self._save("stopped")

    def __enter__(self) -> Swarm:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- start-up -----------------------------------------------------------------------------------

    def _check_abort(self) -> None:
        if self._stop_requested.is_set():
            raise StartupAborted("stop requested during start-up")

    def _prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        previous = load_state(self.data_dir)
        self._previous = previous
        if previous is not None and previous.is_running():
            raise StartupError(
                f"swarm is already running on {self.data_dir} (pid {previous.supervisor_pid}); stop it first"
            )
        self._owns_state = True
        if previous is not None:
            stop_leftovers(previous, self.printer)

    def _log_format(self) -> str:
        if self.config.log_format:
            return self.config.log_format
        explicit = self.config.env.get("LOG_FORMAT") or os.environ.get("LOG_FORMAT")
        if explicit:
            return explicit
        return "console" if sys.stdout.isatty() else "json"

    def _base_env(self, spec: ServiceSpec, index: int, port: int, metrics_port: int) -> dict[str, str]:
        env = {**os.environ, **self.config.env}
        env.update(
            SERVICE_NAME=spec.name,
            HOST=self.config.host,
            PORT=str(port),
            METRICS_PORT=str(metrics_port),
            REDIS_URL=self.redis_url,
            JWT_PUBLIC_KEY_FILE=str(self.keys_dir / "jwt_public.pem"),
            JWT_PRIVATE_KEY_FILE=str(self.keys_dir / "jwt_private.pem") if spec.name in TOKEN_SIGNERS else "",
            LOG_FORMAT=self._log_format(),
            PYTHONUNBUFFERED="1",
            # Stable per replica: a restarted replica resumes its own pending entries at once instead
            # of waiting for another consumer to reclaim them after the idle timeout.
            CONSUMER_NAME=f"{spec.name}-{socket.gethostname()}-{index}",
        )
        if env["LOG_FORMAT"] == "console" and self.printer.color:
            # The child writes to our pipe, not to the terminal, so it cannot see that colours would show.
            env.setdefault("FORCE_COLOR", "1")
        db_url = self.database_url_of(spec)
        if db_url is not None:
            env["DATABASE_URL"] = db_url
        else:
            env.pop("DATABASE_URL", None)  # the external admin DSN is for us, not for the child
        return env

    def _previous_ports(self, label: str) -> tuple[int | None, int | None]:
        """The API and metrics ports `label` had last run, to keep them when they are still free."""
        previous = self._previous.processes() if self._previous is not None else []
        found = next((p for p in previous if p.label == label), None)
        return (found.port, found.metrics_port) if found is not None else (None, None)

    def _child(self, spec: ServiceSpec, index: int, port: int | None = None, **env: str) -> ChildProcess:
        """A process of `spec`; `port` when it is given (the gateway's), else a free one. Its metrics get
        a port of their own either way: every gateway worker's too, so each is scraped apart."""
        previous_port, previous_metrics = self._previous_ports(f"{spec.name}.{index}")
        port = port or self._ports.pick(previous_port)
        metrics_port = self._ports.pick(previous_metrics)
        base = self._base_env(spec, index, port, metrics_port)
        return ChildProcess(spec, index, port, {**base, **env}, self.config.host, metrics_port=metrics_port)

    def _spawn_all(self) -> None:
        for spec in self.services:
            for index in range(1, max(1, self.config.replicas.get(spec.name, 1)) + 1):
                self.children.append(self._child(spec, index))
        if self.gateway_spec is not None:
            port = self.config.gateway_port
            if not port_available(port, self.config.host):
                raise StartupError(f"port {port} is already in use; choose another with --port")
            # Every route is set, empty for a service that is not running: the default would point the
            # gateway at a port where nothing (or something else) listens.
            routes = {
                spec.gateway_env: ",".join(c.url for c in self.replicas_of(spec.name))
                for spec in [*topology.SERVICES, *self.services]
                if spec.gateway_env
            }
            workers = max(1, self.config.gateway_workers)
            if workers > 1:
                routes["REUSE_PORT"] = "true"  # the workers share the port
            for index in range(1, workers + 1):
                self.children.append(self._child(self.gateway_spec, index, port, **routes))
        self.printer.width = max([self.printer.width, *(len(c.label) for c in self.children)])
        for child in self.children:
            child.start(self.printer)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.config.ready_timeout_s
        pending = list(self.children)
        while pending:
            self._check_abort()
            for child in list(pending):
                if not child.running():
                    child.join_output()
                    raise StartupError(
                        f"{child.label} exited with code {child.returncode} during start-up",
                        child.label,
                        child.tail,
                    )
                if child.probe_ready():
                    pending.remove(child)
            if pending and time.monotonic() > deadline:
                labels = ", ".join(c.label for c in pending)
                raise StartupError(
                    f"not ready after {self.config.ready_timeout_s:.0f}s: {labels}",
                    pending[0].label,
                    pending[0].tail,
                )
            if pending:
                self._stop_requested.wait(0.1)

    # -- shutdown -----------------------------------------------------------------------------------

    def _stop_children(self, children: list[ChildProcess]) -> None:
        for child in children:
            (child.kill if self._force.is_set() else child.signal_stop)()
        deadline = time.monotonic() + self.config.stop_timeout_s
        for child in children:
            while child.process is not None and child.wait(0.1) is None:
                if self._force.is_set() or time.monotonic() > deadline:
                    if not self._force.is_set():
                        self.printer.note(f"{child.label} did not stop in time; killing it")
                    child.kill()
            child.join_output()
        for child in children:
            self._restart_at.pop(child.label, None)

    # -- state --------------------------------------------------------------------------------------

    def _process_state(self, child: ChildProcess, running: bool) -> ProcessState:
        return ProcessState(
            child.label, child.url, child.port, child.pid if running else None, child.metrics_port, child.metrics_url
        )

    def _save(self, status: str) -> SwarmState:
        running = status != "stopped"
        state = SwarmState(
            data_dir=str(self.data_dir),
            keys_dir=str(self.keys_dir),
            redis=self.servers.redis_state(running),
            postgres=self.servers.postgres_state(),
            services={
                spec.name: ServiceState(
                    self.database_url_of(spec),
                    [self._process_state(c, running) for c in self.replicas_of(spec.name)],
                )
                for spec in self.services
            },
            gateway=self._process_state(self.gateway, running) if self.gateway else None,
            more_gateway_workers=[self._process_state(c, running) for c in self.gateway_workers[1:]],
            status=status,
            supervisor_pid=os.getpid() if running else None,
            supervisor_cmdline=process_cmdline(os.getpid()) if running else None,
            started_at=self._started_at,
        )
        save_state(self.data_dir, state)
        return state
