"""How `swarm` commands find the running system: `<data-dir>/state.json`, written by `swarm up`.

`swarm up` records what it started (server URLs, each service's database, every process's URL and
pid). Every other command resolves its settings here: a variable set explicitly in the environment
(`REDIS_URL`, `DATABASE_URL`, ...) wins, then the state file of `--data-dir` (default `.swarm`, or
`SWARM_DATA_DIR`), then nothing: a command that needs a value nobody gave fails with a message saying
how to give it, rather than quietly talking to a default server that may belong to someone else.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from common.contracts.topology import SERVICES
from common.core.settings import Settings

STATE_FILE = "state.json"
DEFAULT_DATA_DIR = Path(".swarm")
STATE_VERSION = 1


class NoSystemFound(RuntimeError):
    """Neither the environment nor a state file says where the system is."""


@dataclass
class ProcessState:
    label: str  # "auth_svc.1"
    url: str
    port: int
    pid: int | None = None
    metrics_port: int | None = None  # absent from the state of a `swarm up` that served metrics on `port`
    metrics_url: str | None = None


@dataclass
class ServiceState:
    database_url: str | None
    replicas: list[ProcessState] = field(default_factory=list)

    @property
    def urls(self) -> list[str]:
        return [replica.url for replica in self.replicas]


@dataclass
class ServerState:
    url: str  # for PostgreSQL: the admin DSN (database `postgres`)
    embedded: bool
    port: int | None = None
    pid: int | None = None


@dataclass
class SwarmState:
    data_dir: str
    keys_dir: str
    redis: ServerState
    postgres: ServerState
    services: dict[str, ServiceState] = field(default_factory=dict)
    gateway: ProcessState | None = None
    more_gateway_workers: list[ProcessState] = field(default_factory=list)  # on the gateway's port too
    status: str = "starting"  # starting | running | stopped
    supervisor_pid: int | None = None
    supervisor_cmdline: str | None = None
    started_at: str | None = None
    version: int = STATE_VERSION

    @property
    def private_key_file(self) -> str:
        return str(Path(self.keys_dir) / "jwt_private.pem")

    @property
    def public_key_file(self) -> str:
        return str(Path(self.keys_dir) / "jwt_public.pem")

    def processes(self) -> list[ProcessState]:
        found = [replica for service in self.services.values() for replica in service.replicas]
        return [*found, self.gateway, *self.more_gateway_workers] if self.gateway else found

    def is_running(self) -> bool:
        """Whether the `swarm up` that wrote this file is still alive."""
        return (
            self.status != "stopped"
            and self.supervisor_pid is not None
            and process_matches(self.supervisor_pid, self.supervisor_cmdline)
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> SwarmState:
        gateway = raw.get("gateway")
        return cls(
            data_dir=raw["data_dir"],
            keys_dir=raw["keys_dir"],
            redis=ServerState(**raw["redis"]),
            postgres=ServerState(**raw["postgres"]),
            services={
                name: ServiceState(
                    database_url=svc.get("database_url"),
                    replicas=[ProcessState(**replica) for replica in svc.get("replicas", [])],
                )
                for name, svc in raw.get("services", {}).items()
            },
            gateway=ProcessState(**gateway) if gateway else None,
            more_gateway_workers=[ProcessState(**worker) for worker in raw.get("more_gateway_workers", [])],
            status=raw.get("status", "stopped"),
            supervisor_pid=raw.get("supervisor_pid"),
            supervisor_cmdline=raw.get("supervisor_cmdline"),
            started_at=raw.get("started_at"),
            version=raw.get("version", STATE_VERSION),
        )


def default_data_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    return Path(env.get("SWARM_DATA_DIR") or DEFAULT_DATA_DIR)


def state_path(data_dir: Path) -> Path:
    return Path(data_dir) / STATE_FILE


def load_state(data_dir: Path) -> SwarmState | None:
    """The recorded state of `data_dir`, or None when there is none (or it is unreadable)."""
    try:
        raw = json.loads(state_path(data_dir).read_text())
        return SwarmState.from_dict(raw)
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError):
        return None  # a half-written or foreign file: treat as absent, `swarm up` rewrites it


def save_state(data_dir: Path, state: SwarmState) -> None:
    """Replace the state file atomically, so a reader never sees half of it."""
    path = state_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(state.to_json())
    os.replace(tmp, path)


def pid_alive(pid: int) -> bool:
    """Whether `pid` is a running process (a zombie waiting to be reaped is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError, IndexError):
        # The state letter follows the parenthesised command name, which may itself contain spaces.
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    return True


def process_cmdline(pid: int) -> str | None:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    return None


def process_matches(pid: int, expected: str | None) -> bool:
    """Alive, and (where /proc tells) running the command we recorded: pids get reused."""
    if not pid_alive(pid):
        return False
    if expected is None:
        return True
    cmdline = process_cmdline(pid)
    return cmdline is None or expected in cmdline


def resolve_settings(
    service: str | None = None,
    data_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
    require: Iterable[str] = ("redis_url",),
    **overrides: Any,
) -> Settings:
    """Settings for a command that talks to a running system.

    Precedence per field: keyword overrides, then the explicit environment, then `state.json` of
    `data_dir`. Fields named in `require` (e.g. `redis_url`, `database_url`) must come from one of
    those; the built-in defaults never count, since they may point at an unrelated server.
    """
    env = os.environ if env is None else env
    data_dir = default_data_dir(env) if data_dir is None else data_dir
    state = load_state(data_dir)
    from_state = _values_from_state(state, service) if state else {}
    values = {name: value for name, value in from_state.items() if name.upper() not in env}
    values.update(overrides)
    if service is not None:
        values.setdefault("service_name", service)
    missing = [name for name in require if name not in values and name.upper() not in env]
    if missing:
        wanted = " and ".join(name.upper() for name in missing)
        where = f"{state_path(data_dir)} does not exist" if state is None else f"{state_path(data_dir)} has no value"
        raise NoSystemFound(f"no running system found: {where}; start one with `swarm up`, or set {wanted}")
    return Settings.from_env(env, **values)


def _values_from_state(state: SwarmState, service: str | None) -> dict[str, Any]:
    values: dict[str, Any] = {
        "redis_url": state.redis.url,
        "jwt_private_key_file": state.private_key_file,
        "jwt_public_key_file": state.public_key_file,
    }
    for spec in SERVICES:
        recorded = state.services.get(spec.name)
        if recorded and spec.gateway_env:
            values[spec.gateway_env.lower()] = tuple(recorded.urls)
    recorded_service = state.services.get(service) if service else None
    if recorded_service and recorded_service.database_url:
        values["database_url"] = recorded_service.database_url
    return values


def gateway_url(data_dir: Path | None = None, env: Mapping[str, str] | None = None) -> str:
    """The gateway's base URL: `GATEWAY_URL`, else the one `swarm up` recorded."""
    env = os.environ if env is None else env
    if env.get("GATEWAY_URL"):
        return env["GATEWAY_URL"].rstrip("/")
    data_dir = default_data_dir(env) if data_dir is None else data_dir
    state = load_state(data_dir)
    if state is None or state.gateway is None:
        raise NoSystemFound(
            f"no gateway found in {state_path(data_dir)}; start one with `swarm up`, or set GATEWAY_URL"
        )
    return state.gateway.url
