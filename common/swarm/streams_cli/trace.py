"""`swarm trace REQUEST_ID`: every event a request caused, and when each group processed it."""

from __future__ import annotations

from typing import Annotated

import typer

from common.messaging import views as streams
from common.swarm.streams_cli.base import (
    AsJson,
    DataDir,
    console,
    plural,
    print_json,
    run,
)
from common.swarm.streams_cli.render import dead_letter_table, timeline


def trace(
    request_id: Annotated[str, typer.Argument(help="The X-Request-ID of the request (every response carries it).")],
    limit: Annotated[int, typer.Option("--limit", min=1, max=streams.MAX_COUNT)] = streams.MAX_COUNT,
    as_json: AsJson = False,
    data_dir: DataDir = None,
) -> None:
    """Every event a request caused, in order, across streams: which groups processed each, and when."""
    found = run(data_dir, lambda redis: streams.trace_request(redis, request_id, limit=limit))
    if as_json:
        print_json(found)
        return
    out = console()
    if not found.items and not found.dead_letters:
        out.print(f"no event carries correlation id {request_id} (wrong id, or its events were trimmed)")
        raise typer.Exit(1)
    counts = f"{plural(len(found.items), 'event')}, {plural(len(found.dead_letters), 'dead letter')}"
    title = f"Request {request_id}: {counts}"
    out.print(timeline(found, title=title))
    if found.dead_letters:
        out.print(dead_letter_table(found.dead_letters))
