"""`swarm streams` (the overview), `streams show|tail|pending|event`: reading the streams and groups."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable
from typing import Annotated

import redis.asyncio as aioredis
import typer
from rich.text import Text

from common.messaging import views as streams
from common.messaging.views import Entry, EntryFilter
from common.swarm.streams_cli.base import (
    AsJson,
    DataDir,
    StreamArg,
    brief_time,
    compact,
    console,
    duration,
    fail,
    plural,
    print_json,
    run,
    streams_app,
    table_of,
)
from common.swarm.streams_cli.render import LAG_NOTE, dead_letter_table, entry_line, timeline


@streams_app.callback()
def overview(
    ctx: typer.Context,
    as_json: AsJson = False,
    data_dir: DataDir = None,
) -> None:
    """Without a subcommand: every event stream with its length, groups, lag, pending and dead letters.

    The table shows when each stream last received an entry; `--json` has the first and last entry ids
    and times too."""
    if ctx.invoked_subcommand is not None:
        return
    result = run(data_dir, streams.list_streams)
    if as_json:
        print_json(result)
        return
    table = table_of("Event streams")
    for name, justify in (
        ("stream", "left"),
        ("length", "right"),
        ("last entry", "left"),
        ("groups", "left"),
        ("lag", "right"),
        ("pending", "right"),
        ("dead", "right"),
    ):
        table.add_column(name, justify=justify, no_wrap=name != "groups")  # type: ignore[arg-type]
    for item in result.items:
        table.add_row(
            item.stream,
            str(item.length),
            brief_time(item.last_entry),
            ", ".join(item.groups) or "(none)",
            Text(str(item.lag), style="yellow" if item.lag else ""),
            Text(str(item.pending), style="yellow" if item.pending else ""),
            Text(str(item.dead_letters), style="bold red" if item.dead_letters else ""),
        )
    out = console()
    out.print(table)
    out.print(f"{plural(len(result.items), 'stream')}; {plural(result.dead_letters, 'dead letter')} in events:dlq")


@streams_app.command()
def show(stream: StreamArg, as_json: AsJson = False, data_dir: DataDir = None) -> None:
    """One stream: its groups (pending, lag, last delivered id) and each group's consumers (pending, idle)."""
    detail = run(data_dir, lambda redis: streams.show_stream(redis, stream))
    if as_json:
        print_json(detail)
        return
    out = console()
    first = f"{detail.first_entry.id} ({detail.first_entry.time})" if detail.first_entry else "-"
    last = f"{detail.last_entry.id} ({detail.last_entry.time})" if detail.last_entry else "-"
    added = f" ({detail.entries_added} ever added)" if detail.entries_added is not None else ""
    out.print(f"[bold]{detail.stream}[/bold]: {plural(detail.length, 'entry', 'entries')}{added}")
    out.print(f"first {first}\nlast  {last}\ndead letters: {detail.dead_letters}")
    groups = table_of("Consumer groups")
    for name in ("group", "consumers", "pending", "lag", "last delivered", "entries read"):
        groups.add_column(name, justify="right" if name in ("consumers", "pending", "lag") else "left")
    consumers = table_of("Consumers")
    for name in ("group", "consumer", "pending", "idle"):
        consumers.add_column(name, justify="right" if name in ("pending", "idle") else "left")
    for group in detail.groups:
        lag = str(group.lag) + LAG_NOTE[group.lag_source]
        delivered = f"{group.last_delivered.id} ({group.last_delivered.time})" if group.last_delivered else "-"
        groups.add_row(
            group.name,
            str(len(group.consumers)),
            Text(str(group.pending), style="yellow" if group.pending else ""),
            Text(lag, style="yellow" if group.lag else ""),
            delivered,
            "-" if group.entries_read is None else str(group.entries_read),
        )
        for consumer in group.consumers:
            consumers.add_row(group.name, consumer.name, str(consumer.pending), duration(consumer.idle_ms))
    out.print(groups)
    if detail.groups:
        out.print(consumers)


@streams_app.command()
def tail(
    stream: StreamArg,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new entries until Ctrl-C.")] = False,
    count: Annotated[int, typer.Option("--count", "-n", min=0, help="How many recent entries to print first.")] = 10,
    event_type: Annotated[str | None, typer.Option("--type", help="Only entries of this event type.")] = None,
    actor: Annotated[str | None, typer.Option("--actor", help="Only entries with this actor id.")] = None,
    correlation: Annotated[
        str | None, typer.Option("--correlation", help="Only entries with this correlation id (X-Request-ID).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    data_dir: DataDir = None,
) -> None:
    """The last entries of a stream as decoded envelopes, oldest first; with -f, then every new one."""
    where = EntryFilter(type=event_type, actor=actor, correlation=correlation)
    out = console()
    colour = out.is_terminal

    def emit(entry: Entry) -> None:
        if as_json:
            print(streams.dumps(entry), flush=True)
        else:
            out.print(entry_line(entry, colour), soft_wrap=not colour)

    async def query(redis: aioredis.Redis) -> None:
        key = streams.stream_key(stream)
        if follow and await redis.type(key) == "none":
            # Following a stream nobody has written yet is fine: it starts with its first event.
            start = "0-0"
        else:
            # Where following starts, taken first: an entry added while the recent ones print is followed.
            start = await streams.last_entry_id(redis, key)
            recent = await streams.tail_entries(redis, stream, count=count, where=where, upto=start) if count else []
            for entry in recent:
                emit(entry)
        if not follow:
            return
        await _follow_until_stopped(redis, key, start, where, emit)

    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C before following began: stop quietly too
        run(data_dir, query)


async def _follow_until_stopped(
    redis: aioredis.Redis, key: str, start: str, where: EntryFilter, emit: Callable[[Entry], None]
) -> None:
    """Print entries as they come until Ctrl-C or SIGTERM, then stop quietly (exit status 0)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, stop.set)
    async for entry in streams.follow(redis, key, after=start, where=where, stop=stop):
        emit(entry)


@streams_app.command()
def pending(
    stream: StreamArg,
    group: Annotated[str, typer.Argument(help="The consumer group (a service name, e.g. comment_svc).")],
    count: Annotated[int, typer.Option("--count", "-n", min=1, max=streams.MAX_COUNT)] = 100,
    consumer: Annotated[str | None, typer.Option("--consumer", help="Only entries held by this consumer.")] = None,
    as_json: AsJson = False,
    data_dir: DataDir = None,
) -> None:
    """A group's pending entries: delivered, not yet acknowledged: who holds each, idle time, deliveries."""
    page = run(data_dir, lambda redis: streams.pending_entries(redis, stream, group, count=count, consumer=consumer))
    if as_json:
        print_json(page)
        return
    out = console()
    holders = ", ".join(f"{name}: {n}" for name, n in page.consumers.items()) or "nobody"
    out.print(f"[bold]{page.stream}[/bold] group [bold]{page.group}[/bold]: {page.pending} pending ({holders})")
    if not page.items:
        return
    table = table_of()
    for name in ("entry id", "consumer", "idle", "deliveries", "event id"):
        table.add_column(name, justify="right" if name in ("idle", "deliveries") else "left", no_wrap=True)
    for item in page.items:
        table.add_row(
            item.id,
            item.consumer,
            duration(item.idle_ms),
            Text(str(item.deliveries), style="red" if item.deliveries > 1 else ""),
            item.event_id or "(no longer in the stream)",
        )
    out.print(table)


@streams_app.command("event")
def event(
    event_id: Annotated[str, typer.Argument(metavar="ID", help="An event id, or a correlation id (X-Request-ID).")],
    limit: Annotated[int, typer.Option("--limit", min=1, max=streams.MAX_COUNT)] = 100,
    as_json: AsJson = False,
    data_dir: DataDir = None,
) -> None:
    """Find an event by id (or every event of a correlation id) in all streams, and who consumed it."""
    found = run(
        data_dir, lambda redis: streams.find_events(redis, event_id=event_id, correlation_id=event_id, limit=limit)
    )
    if as_json:
        print_json(found)
        return
    if not found.items and not found.dead_letters:
        raise fail(f"no event with id or correlation id {event_id} in any stream")
    out = console()
    out.print(timeline(found, title=f"Events matching {event_id}"))
    for hit in found.items:
        entry = hit.entry
        out.print(f"[bold]{entry.stream} {entry.id}[/bold] {entry.type} event={entry.event_id}", soft_wrap=True)
        out.print(
            f"  producer={entry.producer or '-'} actor={entry.actor_id or '-'} "
            f"corr={entry.correlation_id or '-'} occurred_at={entry.occurred_at or '-'}",
            soft_wrap=True,
        )
        out.print("  data " + compact(entry.data), soft_wrap=True)
    if found.dead_letters:
        out.print(dead_letter_table(found.dead_letters, title="Dead letters of these events"))
    if found.truncated:
        out.print("[yellow]only part of the matches is shown (limit reached or a stream was too long)[/yellow]")
