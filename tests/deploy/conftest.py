"""What the deployment tests share: where the files are, how they load, and the compose interpolation.

No Docker engine and no cluster run here: the compose file and the Kubernetes manifests are checked
against their JSON schemas (offline: tests/deploy/schemas/, and the `kubernetes-validate` package), and
against the topology in `common.contracts.topology`, which is what the services actually are.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from common.contracts.topology import ServiceSpec

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY = REPO_ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
SCHEMAS = Path(__file__).parent / "schemas"
PG_INIT_SCRIPT = DEPLOY / "postgres-init" / "10-create-databases.sh"
MONGO_INIT_SCRIPT = DEPLOY / "mongo-init" / "10-create-notif-user.js"

# `${NAME}`, `${NAME:-default}`, `${NAME-default}`, `${NAME:?error}`, `${NAME?error}`, `$NAME`, and `$$`.
_INTERPOLATION = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<named>[A-Za-z_][A-Za-z0-9_]*))"
)


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """The compose file as `docker compose config` would see it with `env` as the environment."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["named"]
        op, arg = match["op"], match["arg"] or ""
        present = name in env and (env[name] != "" or not (op or "").startswith(":"))
        if op in {":-", "-"}:
            return env[name] if present else arg
        if op in {":?", "?"} and not present:
            raise KeyError(f"{name}: {arg}")
        return env.get(name, "")

    return _INTERPOLATION.sub(substitute, value)


def interpolated_variables(text: str) -> set[str]:
    """Every variable the compose file reads from the environment."""
    return {m["braced"] or m["named"] for m in _INTERPOLATION.finditer(text) if not m["escaped"]}


def compose_name(service: str) -> str:
    return service.replace("_", "-")  # underscores are not valid in host names


def password_variable(role: str) -> str:
    """The variable the PostgreSQL init script reads a role's password from."""
    return f"{role.upper()}_DB_PASSWORD"


def is_consumer(spec: ServiceSpec) -> bool:
    """Whether the service runs a consumer-group worker: its manifest consumes events (its app hands the
    handlers of exactly those to `consumer_context`)."""
    return bool(spec.manifest().consumes)


def load_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


@pytest.fixture(scope="session")
def compose_raw() -> dict[str, Any]:
    """docker-compose.yml as written (YAML merge keys resolved, `${...}` left in)."""
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return loaded


@pytest.fixture(scope="session")
def compose(compose_raw: dict[str, Any]) -> dict[str, Any]:
    """docker-compose.yml with an empty environment: every variable at its default."""
    resolved: dict[str, Any] = interpolate(compose_raw, {})
    return resolved
