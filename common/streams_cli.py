"""`swarm streams ...`, `swarm dlq ...` and `swarm trace`: the stream-inspection views in a terminal.

Every query is `common.streams` (the admin API of the gateway calls the same functions), and `streams
trim|archive` are `common.retention` (as is the services' automatic trimmer); this module only finds Redis
and renders: rich tables on a terminal (colours only there), `--json` for scripts
(`tail` prints JSON lines, one entry per line, so `tail -f --json | jq` works). Redis is found like
every `swarm` command finds the running system (`common.state.resolve_settings`): `REDIS_URL` when set,
else the one `swarm up` recorded in `--data-dir` (default `.swarm`, or `SWARM_DATA_DIR`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, TypeVar

import orjson
import redis.asyncio as aioredis
import typer
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from common import retention, streams
from common.errors import AppError
from common.logging import configure_logging
from common.retention import RetentionReport, StreamRetention
from common.runtime import make_redis
from common.state import NoSystemFound, resolve_settings
from common.streams import DeadLetter, Entry, EntryFilter, EventSearch, GroupState

T = TypeVar("T")

streams_app = typer.Typer(
    help="Inspect the event streams: lengths, consumer groups, lag, pending entries, events; trim and archive.",
    invoke_without_command=True,
)
dlq_app = typer.Typer(help="Dead letters (events:dlq): list, show, replay, drop.", no_args_is_help=True)

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Folder of a `swarm up` system (default .swarm; REDIS_URL wins)."),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
StreamArg = Annotated[str, typer.Argument(help="Stream, with or without `events:` (newCard, events:newCard).")]

# How a lag was found: Redis (≥ 7) reports it unless entries were deleted; else it is counted.
LAG_NOTE = {"redis": "", "counted": " (counted)", "counted_at_least": "+ (counted)"}
STATE_STYLE = {
    "acknowledged": "green",
    "pending": "yellow",
    "dead_lettered": "bold red",
    "not_delivered": "cyan",
}


# -- plumbing ------------------------------------------------------------------------------------------


def console() -> Console:
    """Colours and the terminal's width on a terminal; plain and wide when piped (no wrapped ids)."""
    if sys.stdout.isatty():
        return Console(highlight=False)
    return Console(highlight=False, width=int(os.environ.get("COLUMNS") or 200), no_color=True)


def fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(1)


def run(data_dir: Path | None, query: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
    """Run `query` against the system's Redis; turn the expected failures into one-line errors."""
    try:
        settings = resolve_settings(None, data_dir=data_dir, require=("redis_url",))
    except NoSystemFound as exc:
        raise fail(str(exc)) from exc

    async def main() -> T:
        redis = make_redis(settings)
        try:
            return await query(redis)
        finally:
            await redis.aclose()

    try:
        return asyncio.run(main())
    except AppError as exc:  # NotFound, Conflict: the same answers the admin API gives
        raise fail(exc.message) from exc
    except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
        raise fail(f"cannot reach Redis at {settings.redis_url}: {exc}") from exc


def print_json(value: Any) -> None:
    typer.echo(streams.dumps(value, indent=True))


def duration(ms: int | None) -> str:
    if ms is None:
        return "-"
    if ms < 1000:
        return f"{ms} ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, seconds = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def table_of(title: str | None = None, *, show_header: bool = True) -> Table:
    """Light tables (no vertical rules): narrow enough for a terminal, easy to grep and paste."""
    return Table(
        title=title,
        title_justify="left",
        title_style="bold",
        header_style="bold",
        box=box.SIMPLE_HEAD,
        show_header=show_header,
        pad_edge=False,
    )


def plural(n: int, word: str, words: str | None = None) -> str:
    return f"{n} {word if n == 1 else words or word + 's'}"


def brief_time(ref: streams.EntryRef | None) -> str:
    """`2026-11-21 07:17:13` (to the second; `show` and --json give the id and exact time)."""
    return ref.time[:19].replace("T", " ") if ref else "-"


def short(value: str, width: int = 8) -> str:
    return value if len(value) <= width else value[:width] + "…"


def compact(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


# -- swarm streams -------------------------------------------------------------------------------------


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


def entry_line(entry: Entry, colour: bool) -> Text:
    line = Text()
    line.append(entry.time, style="dim" if colour else "")
    line.append(f"  {entry.id}  ")
    line.append(entry.type or "?", style="bold cyan" if colour else "")
    line.append(f"  event={entry.event_id or '-'}")
    line.append(f"  actor={entry.actor_id or '-'}")
    line.append(f"  corr={entry.correlation_id or '-'}")
    if entry.replay_for:
        line.append(f"  replay_for={entry.replay_for}", style="magenta" if colour else "")
    if entry.malformed:
        line.append(f"  MALFORMED({entry.malformed})", style="bold red" if colour else "")
    line.append("  " + compact(entry.data))
    return line


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


# -- swarm streams trim | archive ------------------------------------------------------------------------

OlderThan = Annotated[
    str | None,
    typer.Option(
        "--older-than",
        metavar="AGE",
        help="Only entries older than this (90d, 12h, 30m, 2w, or seconds); default: any age.",
    ),
]
OnlyStreams = Annotated[
    list[str] | None,
    typer.Option("--stream", help="Only this stream (repeatable); default: every event stream but events:dlq."),
]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Say what would go; change nothing.")]


def age_option(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return retention.parse_age(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--older-than") from None


@streams_app.command()
def trim(
    older_than: OlderThan = None,
    stream: OnlyStreams = None,
    dry_run: DryRun = False,
    as_json: AsJson = False,
    data_dir: DataDir = None,
) -> None:
    """Remove the entries every consumer group has delivered and acknowledged (and, with --older-than, only
    the old ones), without archiving them. A stream no group reads, and events:dlq, are never trimmed."""
    age = age_option(older_than)
    quiet_logs()
    report = run(
        data_dir,
        lambda redis: retention.apply_retention(redis, streams=stream or None, older_than_s=age, dry_run=dry_run),
    )
    render_retention(report, as_json)


@streams_app.command()
def archive(
    files: Annotated[
        list[Path] | None,
        typer.Argument(metavar="FILE|DIR", help="With --read: archive files, or folders of them."),
    ] = None,
    to: Annotated[
        Path | None,
        typer.Option("--to", metavar="DIR", help="Write the entries to DIR/<stream>/<day>.jsonl.gz, then trim them."),
    ] = None,
    older_than: OlderThan = None,
    stream: OnlyStreams = None,
    dry_run: DryRun = False,
    read: Annotated[bool, typer.Option("--read", help="Instead: print the entries of archive FILEs.")] = False,
    event_type: Annotated[str | None, typer.Option("--type", help="--read: only entries of this type.")] = None,
    actor: Annotated[str | None, typer.Option("--actor", help="--read: only entries with this actor id.")] = None,
    correlation: Annotated[
        str | None, typer.Option("--correlation", help="--read: only entries with this correlation id.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (--read: one entry per line).")] = False,
    data_dir: DataDir = None,
) -> None:
    """Archive what trimming would remove to compressed JSON-lines files (one per stream and day), fsynced,
    then trim it; or, with --read, print archived entries (a folder: every file in it, oldest day first)."""
    if read:
        if to is not None or not files:
            raise typer.BadParameter("--read takes archive files or folders, and no --to", param_hint="--read")
        read_archives(files, EntryFilter(type=event_type, actor=actor, correlation=correlation), as_json)
        return
    if files:
        raise typer.BadParameter("files are for --read; to archive, give --to DIR", param_hint="FILE")
    if to is None:
        raise typer.BadParameter("where to? give --to DIR (or --read FILE to read an archive)", param_hint="--to")
    age = age_option(older_than)
    quiet_logs()
    report = run(
        data_dir,
        lambda redis: retention.apply_retention(
            redis, streams=stream or None, older_than_s=age, archive_dir=to, dry_run=dry_run
        ),
    )
    render_retention(report, as_json)


def quiet_logs() -> None:
    """The report says what was done; only warnings and errors of the retention module, on stderr."""
    configure_logging("swarm", "warning", "console")


def why_stopped(item: StreamRetention, report: RetentionReport) -> str:
    holder = item.holder
    if item.stopped_by == retention.SAFE_POINT and holder is not None:
        if holder.reason == "pending":
            who = f" on {holder.consumer}" if holder.consumer else ""
            return f"group {holder.group} has {holder.entry_id} pending{who} (not acknowledged)"
        if holder.entry_id in ("0-0", "0"):
            return f"group {holder.group} has not been delivered any entry yet"
        return f"group {holder.group} has not been delivered the entries after {holder.entry_id}"
    age = retention.format_age(report.older_than_s) if report.older_than_s is not None else ""
    return {
        retention.NO_GROUPS: "no consumer group: nobody has consumed it, so it is not trimmed",
        retention.AGE: f"the next entry is younger than {age}",
        retention.END: "every entry was consumed by every group" + (f" and is older than {age}" if age else ""),
        retention.EMPTY: "empty",
        retention.LOCKED: "skipped: another trimmer is working on this stream",
        retention.ERROR: f"archive failed, nothing more trimmed: {item.error}",
    }.get(item.stopped_by, item.stopped_by)


def render_retention(report: RetentionReport, as_json: bool) -> None:
    failed = any(item.stopped_by == retention.ERROR for item in report.items)
    if as_json:
        print_json(report)
        if failed:
            raise typer.Exit(1)
        return
    out = console()
    archiving = report.archive_dir is not None
    verb = ("Would archive and trim" if archiving else "Would trim") if report.dry_run else "Archived and trimmed"
    if not report.dry_run and not archiving:
        verb = "Trimmed"
    scope = f"entries older than {retention.format_age(report.older_than_s)}" if report.older_than_s is not None else ""
    if report.cutoff is not None:
        scope += f" (before {report.cutoff.time})"
    # A heading of its own, not the table's title: rich cuts a title wider than the table (a long folder).
    heading = f"{verb} {scope or 'every consumed entry'}" + (f", to {report.archive_dir}" if archiving else "")
    out.print(heading, soft_wrap=True)
    table = table_of()
    columns = ["stream", "before", "removed", *(["archived"] if archiving else []), "left", "oldest left", "stopped"]
    for name in columns:
        table.add_column(name, justify="right" if name in ("before", "removed", "archived", "left") else "left")
    for item in report.items:
        archived = str(item.archived) + (f" (+{item.already_archived} had been)" if item.already_archived else "")
        style = "bold red" if item.stopped_by == retention.ERROR else "yellow" if item.stopped_by == "locked" else ""
        table.add_row(
            item.stream,
            str(item.length),
            Text(str(item.removed), style="green" if item.removed else ""),
            *([archived] if archiving else []),
            str(item.left),
            brief_time(item.first_kept),
            Text(why_stopped(item, report), style=style),
        )
    out.print(table)
    removed = sum(item.removed for item in report.items)
    done = "would be removed" if report.dry_run else "removed"
    out.print(f"{plural(removed, 'entry', 'entries')} {done} from {plural(len(report.items), 'stream')}")
    files = sorted({path for item in report.items for path in item.files})
    if files:
        out.print(("would write:" if report.dry_run else "wrote:") + "".join(f"\n  {path}" for path in files))
    if failed:
        raise typer.Exit(1)


def archive_files(paths: list[Path]) -> list[Path]:
    """Files as given; a folder: its `*.jsonl.gz` files, by name (a stream's folder: oldest day first)."""
    found = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(path.rglob("*.jsonl.gz")))
        elif path.is_file():
            found.append(path)
        else:
            raise fail(f"no archive file or folder {path}")
    return found


def entries_of(path: Path, where: EntryFilter, problems: list[retention.ArchiveDamaged]) -> Iterator[Entry]:
    """The readable entries of an archive file; what makes the rest unreadable goes to `problems`."""
    try:
        yield from retention.read_archive(path, where)
    except retention.ArchiveDamaged as exc:
        problems.append(exc)


def read_archives(paths: list[Path], where: EntryFilter, as_json: bool) -> None:
    """Every entry of the files, in file order (a stream's folder: oldest day first): one table, or JSON
    lines as they are read. An unreadable end of a file is reported on stderr after what could be read."""
    files = archive_files(paths)
    found: list[Entry] = []
    problems: list[retention.ArchiveDamaged] = []
    for path in files:
        try:
            for entry in entries_of(path, where, problems):
                if as_json:
                    print(streams.dumps(entry), flush=True)
                else:
                    found.append(entry)
        except BrokenPipeError:  # `| head`: the reader has seen enough
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(0) from None
        except OSError as exc:
            raise fail(f"cannot read {path}: {exc}") from exc
    if not as_json:
        out = console()
        names = ", ".join(sorted({entry.stream for entry in found})) or "no stream"
        heading = f"{plural(len(found), 'archived entry', 'archived entries')} of {names}"
        out.print(f"{heading} from {plural(len(files), 'file')}", soft_wrap=True)
        if found:
            out.print(archive_table(found))
    for problem in problems:
        # An incomplete last block is an archive run interrupted before it trimmed: not a loss.
        note = "not trimmed, so still in the stream or archived again later" if problem.torn else "damaged"
        typer.echo(f"{'warning' if problem.torn else 'error'}: {problem} ({note})", err=True)
    if any(not problem.torn for problem in problems):
        raise typer.Exit(1)


def archive_table(entries: list[Entry]) -> Table:
    several = len({entry.stream for entry in entries}) > 1
    table = table_of()
    # The actor is left out for width (--json has everything; --actor filters by it).
    for name in ("time", "entry id", *(["stream"] if several else []), "type", "event id", "correlation"):
        table.add_column(name, no_wrap=name != "correlation")
    table.add_column("data", overflow="fold", min_width=40)  # JSON has no spaces to wrap at
    for entry in entries:
        data = compact(entry.data)
        if entry.malformed:
            data = f"MALFORMED({entry.malformed}) {data}"
        table.add_row(
            entry.time[:23].replace("T", " "),
            entry.id,
            *([entry.stream] if several else []),
            entry.type or "?",
            entry.event_id or "-",
            entry.correlation_id or "-",
            data,
        )
    return table


# -- shared renderings ---------------------------------------------------------------------------------


def state_text(state: GroupState) -> Text:
    text = Text(state.state.replace("_", "-"), style=STATE_STYLE.get(state.state, ""))
    if state.state == "pending":
        text.append(f" on {state.consumer}, {plural(state.deliveries or 0, 'delivery', 'deliveries')}")
        text.append(f", idle {duration(state.idle_ms)}")
    if state.skipped:
        text.append(" (replay for another group: skipped)")
    return text


def time_of_day(rfc3339: str | None) -> str:
    """`2026-11-21T07:17:13.497Z` → `07:17:13.497` (the day is in the table's title)."""
    return rfc3339[11:23] if rfc3339 else ""


def timeline(found: EventSearch, title: str) -> Table:
    """One row per (event, group): when the entry was added, and when each group acknowledged it."""
    day = found.items[0].entry.time[:10] if found.items else ""
    table = table_of(f"{title} ({day}, UTC)" if day else title)
    for name in ("#", "added", "event", "entry id", "group", "state", "acked", "after"):
        table.add_column(name, justify="right" if name in ("#", "after") else "left", no_wrap=name != "state")
    for number, hit in enumerate(found.items, start=1):
        entry = hit.entry
        head = [str(number), time_of_day(entry.time), entry.type or "?", entry.id]
        if not hit.groups:
            table.add_row(*head, "(no group)", "", "", "")
        for index, state in enumerate(hit.groups):
            cells = head if index == 0 else [""] * len(head)
            after = f"+{state.ack_delay_ms} ms" if state.ack_delay_ms is not None else ""
            table.add_row(*cells, state.group, state_text(state), time_of_day(state.acked_at), after)
    return table


def dead_letter_table(letters: list[DeadLetter], title: str = "Dead letters") -> Table:
    """The essentials of each; `swarm dlq show ID` has the rest (entry, event id, envelope, whole error)."""
    table = table_of(title)
    for name in ("id", "failed at", "event", "group", "deliveries", "error"):
        table.add_column(name, justify="right" if name == "deliveries" else "left", no_wrap=name != "error")
    for letter in letters:
        error = letter.error.splitlines()[0] if letter.error else ""
        table.add_row(
            letter.id,
            (letter.failed_at or letter.time)[:19].replace("T", " "),
            letter.event_type or streams.stream_type(letter.stream),
            letter.group,
            str(letter.deliveries),
            Text(short(error, 90), style="red"),
        )
    return table


# -- swarm trace ---------------------------------------------------------------------------------------


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


# -- swarm dlq -----------------------------------------------------------------------------------------


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
