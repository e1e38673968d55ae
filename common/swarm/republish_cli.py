"""`swarm republish KIND`: re-publish a snapshot of a producer's entities (common/messaging/republish.py),
as its manifest declares them.

The events are queued in the producer's outbox; its running service publishes them (or, if it is not
running, at its next start). Run `swarm check --wait 30` afterwards to see the replicas converge.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated

import typer

from common.contracts import topology
from common.messaging.republish import SnapshotSource, republish
from common.swarm.state import default_data_dir, load_state, state_path


def declared_snapshots(services: Iterable[str]) -> dict[str, SnapshotSource]:
    """What the manifests of the given services offer to re-publish, by kind (services not here: none)."""
    found: dict[str, SnapshotSource] = {}
    for name in services:
        spec = topology.spec_for(name)
        if not spec.importable():
            continue
        for kind, snapshot in spec.manifest().snapshot_table().items():
            found[kind] = SnapshotSource(kind, name, snapshot)
    return found


def republish_command(
    kind: Annotated[str, typer.Argument(help="What to re-publish: users, projects, cards or comments.")],
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="Folder of a `swarm up` system.")] = None,
    database: Annotated[
        str | None, typer.Option("--database", help="DSN of the producer's database (default: from `swarm up`).")
    ] = None,
) -> None:
    """Re-publish every entity of KIND as ordinary versioned events, to rebuild replicas (even after trimming)."""
    sources = declared_snapshots(spec.name for spec in topology.services())
    source = sources.get(kind)
    if source is None:
        raise typer.BadParameter(f"{kind!r}: expected one of {', '.join(sorted(sources))}", param_hint="KIND")
    dsn = database
    if dsn is None:
        folder = data_dir or default_data_dir()
        state = load_state(folder)
        recorded = state.services.get(source.service) if state else None
        if recorded is None or not recorded.database_url:
            typer.echo(
                f"error: no database of {source.service} recorded in {state_path(folder)}; pass --database", err=True
            )
            raise typer.Exit(1)
        dsn = recorded.database_url
    queued, correlation_id = asyncio.run(republish(dsn, source.snapshot))
    typer.echo(f"{queued} events of {kind} queued in {source.service}'s outbox (correlation id {correlation_id})")
