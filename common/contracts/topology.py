"""The one list of what the system runs: every service and the gateway, with what the deployment gives
each (its database, the gateway variable that receives its URLs, its readiness path).

What each of them *is* (app factory, events, handlers, snapshots, checks, routes, CLI) is its manifest
(`common.contracts.manifest`), in `<package>/manifest.py`, found by the service's name: `swarm up`,
`python -m common.serve`, `swarm check|republish`, the documents and the CLI read manifests through
here. Listing the services imports none of their packages (only whether they are there): `common` does
not import service packages at import time, and a service whose package is not there yet (built in a
later step, or left out of an image) is skipped instead of breaking everything else.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Iterable
from dataclasses import dataclass

from common.contracts.checks import Mirror
from common.contracts.manifest import AppFactory, ManifestError, ServiceManifest, validate

MANIFEST_MODULE = "manifest"
MANIFEST_NAME = "MANIFEST"


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """One kind of process: where its manifest is, and what it needs from the supervisor."""

    name: str  # also the package holding its manifest
    # A bare app factory ("package.module:callable") run instead of a manifest's: stand-ins in tests.
    factory: str | None = None
    database: str | None = None  # its own PostgreSQL database, created by `swarm up`
    gateway_env: str | None = None  # the gateway variable that receives the URLs of its replicas
    ready_path: str = "/ready"

    @property
    def module(self) -> str:
        """What must be importable for this service to run: its manifest (or its stand-in factory)."""
        return self.factory.partition(":")[0] if self.factory else f"{self.name}.{MANIFEST_MODULE}"

    def importable(self) -> bool:
        return module_available(self.module)

    def manifest(self) -> ServiceManifest:
        return manifest_of(self.name)

    def app_factory(self) -> AppFactory:
        return load_factory(self.factory) if self.factory else self.manifest().app_factory()


SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec("auth_svc", database="taskswarm_auth", gateway_env="AUTH_URL"),
    ServiceSpec("project_svc", database="taskswarm_project", gateway_env="PROJECT_URL"),
    ServiceSpec("comment_svc", database="taskswarm_comment", gateway_env="COMMENT_URL"),
    ServiceSpec("notif_svc", database="taskswarm_notif", gateway_env="NOTIF_URL"),
)

# The gateway owns no data; its /health aggregates the services' readiness, so it is what we wait on.
GATEWAY = ServiceSpec("gateway", ready_path="/health")


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


def manifest_of(name: str) -> ServiceManifest:
    """The manifest of service `name` (`<name>/manifest.py`, `MANIFEST`); ManifestError if it has none."""
    module_name = f"{name}.{MANIFEST_MODULE}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ManifestError(f"{name} has no manifest: cannot import {module_name} ({exc})") from exc
    found = getattr(module, MANIFEST_NAME, None)
    if not isinstance(found, ServiceManifest):
        raise ManifestError(f"{module_name} defines no {MANIFEST_NAME} = ServiceManifest(...)")
    if found.name != name:
        raise ManifestError(f"{module_name} describes {found.name!r}, not {name!r}")
    return found


def manifests(specs: Iterable[ServiceSpec] | None = None) -> list[ServiceManifest]:
    """The manifests of `specs` (default: the services present here)."""
    return [spec.manifest() for spec in (services() if specs is None else specs)]


def validate_all(found: Iterable[ServiceManifest]) -> None:
    """Each manifest on its own, then across them: every mirror's source names a service present with that
    query. Raises ManifestError with every problem found."""
    listed = list(found)
    problems = []
    for manifest in listed:
        try:
            validate(manifest, cli=True)
        except ManifestError as exc:
            problems.append(str(exc))
    by_name = {manifest.name: manifest for manifest in listed}
    for manifest in listed:
        for check in manifest.replica_checks:
            if not isinstance(check, Mirror):
                continue
            source = by_name.get(check.source)
            if source is None:
                problems.append(f"{check.name}: its source {check.source} has no manifest here")
            elif check.source_query not in source.queries():
                problems.append(f"{check.name}: {check.source} declares no query {check.source_query!r}")
    if problems:
        raise ManifestError("; ".join(problems))


def load_factory(factory: str) -> AppFactory:
    """Import `package.module:callable` and return the callable."""
    module_name, sep, attribute = factory.partition(":")
    if not sep or not attribute:
        raise ValueError(f"factory {factory!r} is not of the form 'package.module:callable'")
    module = importlib.import_module(module_name)
    found: AppFactory = getattr(module, attribute)
    return found
