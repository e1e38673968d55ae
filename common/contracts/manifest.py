"""A service's manifest: the one place that says what the service is, read by every tool.

Each service package has a `manifest.py` holding `MANIFEST = ServiceManifest(...)`:
- `app`: its app factory (named, see the field); `routes`: what adds its HTTP routes (the gateway's
  merged OpenAPI reads them);
- `publishes`: every event type it publishes → the schema its `data` is dumped with (one list: the
  AsyncAPI document, the README's event table and the retention trimmer all read it);
- `consumes`: every event type it consumes → the schema its handler loads `data` with; the app hands its
  handler table to `checked_handlers`, which refuses a table that does not cover exactly these;
- `snapshots`: what `swarm republish` can re-publish from it, by kind;
- `check_queries`: named read-only queries of its own database (SQL in its store), and `replica_checks`:
  the comparisons `swarm check` runs between its replicas and their sources, naming those queries;
- `cli`: the `swarm` command groups it contributes, by name (loaded only when that command runs).

A manifest module stays light (its schemas and `common.contracts`, nothing else): every tool imports it,
the gateway included. What needs the service's code (the app, routes, snapshots, queries, CLI) is a
function with a deferred import, so mypy checks the name and nothing loads until a tool calls it.
`validate` checks a manifest on its own (at start-up, by the app factory), `topology.validate_all` all of
them together (in a test); `swarm check` refuses a check naming a query nobody declares: a missing or
misspelt declaration fails loudly instead of dropping a check.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from marshmallow import Schema

from common.contracts.checks import Check, Mirror
from common.core.settings import Settings
from common.messaging.handlers import Handler
from common.messaging.republish import Snapshot

# Builds the service's aiohttp application. Typed loosely on purpose: the tools that only read manifests
# (`swarm streams`, `swarm check`) must not load aiohttp to do so.
AppFactory = Callable[[Settings], Any]


class ManifestError(RuntimeError):
    """A manifest that does not say what its service does (or says what it cannot do)."""


@dataclass(frozen=True, slots=True)
class ServiceManifest:
    name: str
    # "package.module:callable", not a function: the app module reads its manifest (publishes, consumes),
    # so the manifest names it instead of importing it (dependencies point one way: app → manifest).
    app: str
    routes: Callable[[], Callable[[Any], None]] | None = None  # called with an aiohttp Application
    publishes: Mapping[str, type[Schema]] = field(default_factory=dict)
    consumes: Mapping[str, type[Schema]] = field(default_factory=dict)
    snapshots: Callable[[], Mapping[str, Snapshot]] | None = None
    check_queries: Callable[[], Mapping[str, str]] | None = None  # query name → SQL on its own database
    replica_checks: Sequence[Check] = ()
    cli: Mapping[str, Callable[[], Any]] = field(default_factory=dict)  # `swarm` group name → its Typer app

    def checked_handlers(self, handlers: Mapping[str, Handler]) -> Mapping[str, Handler]:
        """`handlers`, if they are exactly one per consumed event type; else ManifestError (at start-up)."""
        missing = sorted(set(self.consumes) - set(handlers))
        undeclared = sorted(set(handlers) - set(self.consumes))
        if missing or undeclared:
            raise ManifestError(
                f"{self.name}: the handler table does not match the manifest's consumed events"
                + (f"; no handler for {', '.join(missing)}" if missing else "")
                + (f"; handlers for undeclared {', '.join(undeclared)}" if undeclared else "")
            )
        return handlers

    def app_factory(self) -> AppFactory:
        """The app factory `app` names, imported now; ManifestError if it is not there."""
        module_name, sep, attribute = self.app.partition(":")
        try:
            found = getattr(importlib.import_module(module_name), attribute, None) if sep and attribute else None
        except ImportError as exc:
            raise ManifestError(f"{self.name}: app {self.app!r} cannot be imported ({exc})") from exc
        if not callable(found):
            raise ManifestError(f"{self.name}: app {self.app!r} is not 'package.module:callable' naming a factory")
        return found  # type: ignore[no-any-return]

    def queries(self) -> Mapping[str, str]:
        return self.check_queries() if self.check_queries is not None else {}

    def snapshot_table(self) -> Mapping[str, Snapshot]:
        return self.snapshots() if self.snapshots is not None else {}


def validate(manifest: ServiceManifest, *, cli: bool = False) -> None:
    """What one manifest must hold true on its own: every event has a schema, every lazy part resolves,
    every replica check's own side names a query it declares. Raises ManifestError. The CLI groups are
    resolved only with `cli` (a service starting up need not load the operator tool)."""
    problems: list[str] = []
    for kind, table in (("publishes", manifest.publishes), ("consumes", manifest.consumes)):
        for event, schema in table.items():
            if not (isinstance(schema, type) and issubclass(schema, Schema)):
                problems.append(f"{kind} {event!r}: {schema!r} is not a marshmallow schema class")
    resolved: dict[str, Any] = {}
    try:
        manifest.app_factory()
    except ManifestError as exc:
        problems.append(str(exc))
    loaders = {part: getattr(manifest, part) for part in ("routes", "snapshots", "check_queries")}
    if cli:
        loaders |= {f"cli {name!r}": load for name, load in manifest.cli.items()}
    for part, load in loaders.items():
        if load is None:
            continue
        try:
            resolved[part] = load()
        except ImportError as exc:
            problems.append(f"{part}: {exc}")
    for kind, item in (resolved.get("snapshots") or {}).items():
        if not callable(item):
            problems.append(f"snapshot {kind!r} is not callable")
    queries = resolved.get("check_queries") or {}
    for check in manifest.replica_checks:
        service, own = (
            (check.replica, check.replica_query) if isinstance(check, Mirror) else (check.service, check.query)
        )
        if service != manifest.name:
            problems.append(f"replica check {check.name!r} is declared by {manifest.name} for {service}")
        if own not in queries:
            problems.append(f"replica check {check.name!r} names query {own!r}, which the manifest does not declare")
    if problems:
        raise ManifestError(f"manifest of {manifest.name}: " + "; ".join(problems))
