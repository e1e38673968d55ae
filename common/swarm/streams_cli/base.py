"""What every stream command shares: the Typer groups and options, finding Redis, terminal helpers."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
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

from common.core.errors import AppError
from common.messaging import views as streams
from common.redis.client import make_redis
from common.swarm.state import NoSystemFound, resolve_settings

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
