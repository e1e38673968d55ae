"""`swarm dlq list|show|replay|drop`: the dead letters of `events:dlq`."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from common.messaging import views as streams
from common.swarm.streams_cli.base import (
    AsJson,
    DataDir,
    console,
    dlq_app,
    plural,
    print_json,
    run,
    table_of,
)
from common.swarm.streams_cli.render import dead_letter_table


@dlq_app.command("list")
def dlq_list(
    stream: Annotated[str | None, typer.Option("--stream", help="Only dead letters of this stream.")] = None,
    group: Annotated[str | None, typer.Option("--group", help="Only dead letters of this group.")] = None,
    count: Annotated[int, typer.Option("--count", "-n", min=1, max=streams.MAX_COUNT)] = 50,
    start: Annotated[str | None, typer.Option("--from", help="Start at this dead-letter id.")] = None,
    as_json: AsJson = False,
    data_dir: DataDir = None,
) -> None:
    """Dead letters, oldest first: original stream and entry, group, deliveries, error."""
    if start is not None and not streams.is_entry_id(start):
        raise typer.BadParameter("not a stream entry id", param_hint="--from")
    page = run(
        data_dir, lambda redis: streams.list_dead_letters(redis, start=start, count=count, stream=stream, group=group)
    )
    if as_json:
        print_json(page)
        return
    out = console()
    if not page.items:
        everything = f"{plural(page.total, 'dead letter')} in all"
        out.print(f"no dead letters match ({everything})" if stream or group or start else "events:dlq is empty")
        return
    out.print(dead_letter_table(page.items, title=f"Dead letters ({page.total} in events:dlq)"))
    if page.next_from:
        out.print(f"more: swarm dlq list --from {page.next_from}")


LetterId = Annotated[str, typer.Argument(metavar="ID", help="The dead letter's id in events:dlq (`swarm dlq list`).")]


@dlq_app.command("show")
def dlq_show(letter_id: LetterId, as_json: AsJson = False, data_dir: DataDir = None) -> None:
    """One dead letter in full, with the envelope that failed."""
    letter = run(data_dir, lambda redis: streams.get_dead_letter(redis, letter_id))
    if as_json:
        print_json(letter)
        return
    table = table_of(f"Dead letter {letter.id}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    rows = {
        "dead-lettered": f"{letter.failed_at or letter.time}",
        "stream": letter.stream,
        "entry": f"{letter.entry_id} ({letter.entry_time or '?'})",
        "group": letter.group,
        "consumer": letter.consumer,
        "deliveries": str(letter.deliveries),
        "event": f"{letter.event_type or '?'} {letter.event_id or '-'}",
        "correlation": letter.correlation_id or "-",
        "error": letter.error,
    }
    for name, value in rows.items():
        table.add_row(name, value)
    out = console()
    out.print(table)
    out.print("envelope " + streams.dumps(letter.envelope, indent=True), soft_wrap=True)


@dlq_app.command("replay")
def dlq_replay(letter_id: LetterId, as_json: AsJson = False, data_dir: DataDir = None) -> None:
    """Put a dead letter back on its stream for its group only (the other groups skip it), and remove it."""
    result = run(data_dir, lambda redis: streams.replay_dead_letter(redis, letter_id))
    if as_json:
        print_json(result)
        return
    typer.echo(
        f"replayed dead letter {result.dead_letter_id} to {result.stream} as entry {result.entry_id} "
        f"for group {result.group}"
    )


@dlq_app.command("drop")
def dlq_drop(
    letter_id: LetterId,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask (asked only on a terminal).")] = False,
    data_dir: DataDir = None,
) -> None:
    """Delete a dead letter for good (its event is then never applied by its group)."""
    if not yes and sys.stdin.isatty() and not typer.confirm(f"drop dead letter {letter_id} for good?"):
        raise typer.Exit(1)
    run(data_dir, lambda redis: streams.drop_dead_letter(redis, letter_id))
    typer.echo(f"dropped dead letter {letter_id}")
