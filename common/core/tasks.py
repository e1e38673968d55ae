"""What every background loop needs from asyncio: sleep until stopped, and stop a task with grace."""

from __future__ import annotations

import asyncio
import contextlib


async def sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    """Sleep `seconds`, or less if `stop` is set meanwhile (a loop's wait never delays its shutdown)."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def stop_with_grace(task: asyncio.Task[None], grace_s: float) -> None:
    """Give a task that was asked to stop `grace_s` to finish what it is doing, then cancel it.

    The wait is shielded: only the grace running out cancels the task, never the wait itself."""
    try:
        await asyncio.wait_for(asyncio.shield(task), grace_s)
    except TimeoutError:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
