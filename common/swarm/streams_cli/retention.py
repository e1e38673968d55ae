"""`swarm streams trim|archive`: retention by hand (`common.messaging.retention`), and reading archives."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from common.core.logging import configure_logging
from common.messaging import retention
from common.messaging import views as streams
from common.messaging.retention import RetentionReport, StreamRetention
from common.messaging.views import Entry, EntryFilter
from common.swarm.streams_cli.base import (
    AsJson,
    DataDir,
    brief_time,
    compact,
    console,
    fail,
    plural,
    print_json,
    run,
    streams_app,
    table_of,
)

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
