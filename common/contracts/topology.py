"""The one list of what the system runs: every service, its app factory, its database, its gateway route.

`swarm up`, `python -m common.serve`, docker-compose's consistency test and the CLI all read this list,
so adding a service means adding one line here. Factories are import strings, not objects: `common`
must not import service packages at import time, and a service whose package is not there yet
(built in a later step, or left out of an image) is skipped instead of breaking everything else.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from common.core.settings import Settings

# Builds the aiohttp application of a service. Typed loosely on purpose: the tools that only read the
# topology (`swarm streams`, `swarm check`) must not load aiohttp to do so.
AppFactory = Callable[[Settings], Any]


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """One kind of process: what to import to run it and what it needs from the supervisor."""

    name: str
    factory: str  # "package.module:callable", a `create_app(settings)`
    database: str | None = None  # its own PostgreSQL database, created by `swarm up`
    gateway_env: str | None = None  # the gateway variable that receives the URLs of its replicas
    ready_path: str = "/ready"

    @property
    def module(self) -> str:
        return self.factory.partition(":")[0]

    def importable(self) -> bool:
        return module_available(self.module)


SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec("auth_svc", "auth_svc.app:create_app", "taskswarm_auth", "AUTH_URL"),
    ServiceSpec("project_svc", "project_svc.app:create_app", "taskswarm_project", "PROJECT_URL"),
    ServiceSpec("comment_svc", "comment_svc.app:create_app", "taskswarm_comment", "COMMENT_URL"),
    ServiceSpec("notif_svc", "notif_svc.app:create_app", "taskswarm_notif", "NOTIF_URL"),
)

# The gateway owns no data; its /health aggregates the services' readiness, so it is what we wait on.
GATEWAY = ServiceSpec("gateway", "gateway.app:create_app", ready_path="/health")


def module_available(module: str) -> bool:
    """Whether `module` can be imported, without importing it (only its parent packages)."""
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


def services(specs: Iterable[ServiceSpec] = SERVICES) -> list[ServiceSpec]:
    """The services whose package exists here, in start order."""
    return [spec for spec in specs if spec.importable()]


def gateway() -> ServiceSpec | None:
    return GATEWAY if GATEWAY.importable() else None


def spec_for(name: str) -> ServiceSpec:
    """The spec of a service or the gateway by name, whether or not its package exists."""
    for spec in (*SERVICES, GATEWAY):
        if spec.name == name:
            return spec
    known = ", ".join(spec.name for spec in (*SERVICES, GATEWAY))
    raise KeyError(f"unknown service {name!r} (known: {known})")


def load_factory(factory: str) -> AppFactory:
    """Import `package.module:callable` and return the callable."""
    module_name, sep, attribute = factory.partition(":")
    if not sep or not attribute:
        raise ValueError(f"factory {factory!r} is not of the form 'package.module:callable'")
    module = importlib.import_module(module_name)
    found: AppFactory = getattr(module, attribute)
    return found
