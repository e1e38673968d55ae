"""Renderings more than one command prints: an entry as one line, the per-group timeline, dead letters."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from common.messaging import views as streams
from common.messaging.views import DeadLetter, Entry, EventSearch, GroupState
from common.swarm.streams_cli.base import (
    compact,
    duration,
    plural,
    short,
    table_of,
)

# How a lag was found: Redis (≥ 7) reports it unless entries were deleted; else it is counted.
LAG_NOTE = {"redis": "", "counted": " (counted)", "counted_at_least": "+ (counted)"}


STATE_STYLE = {
    "acknowledged": "green",
    "pending": "yellow",
    "dead_lettered": "bold red",
    "not_delivered": "cyan",
}


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
