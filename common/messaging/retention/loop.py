"""The services' automatic trimmer: `apply_retention` every interval, on the streams the service produces."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import redis.asyncio as aioredis
import structlog

from common.core.envelope import DEAD_LETTER_STREAM
from common.core.tasks import sleep_unless
from common.messaging.retention.trim import RetentionReport, apply_retention
from common.redis.keys import stream_key

log = structlog.get_logger("retention")


class RetentionLoop:
    """Every `interval_s`, trim `streams` to `older_than_s` (archiving to `archive_dir` when set).

    A failed pass (Redis unreachable, a disk error) is logged and retried at the next interval; nothing
    is trimmed that was not archived first."""

    def __init__(
        self,
        redis: aioredis.Redis,
        streams: Sequence[str],
        *,
        older_than_s: int,
        interval_s: float,
        archive_dir: Path | str | None = None,
    ) -> None:
        self._redis = redis
        self.streams = [stream_key(name) for name in streams if stream_key(name) != DEAD_LETTER_STREAM]
        self._older_than_s = older_than_s
        self._interval_s = interval_s
        self._archive_dir = archive_dir or None
        self._stopping = asyncio.Event()
        self.passes = 0
        self.last_report: RetentionReport | None = None

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        while not self._stopping.is_set():
            await self.run_once()
            await sleep_unless(self._stopping, self._interval_s)

    async def run_once(self) -> RetentionReport | None:
        try:
            report = await apply_retention(
                self._redis,
                streams=self.streams,
                older_than_s=self._older_than_s,
                archive_dir=self._archive_dir,
                skip_missing=True,
            )
        except Exception as exc:  # next pass will try again; a trimmer must not take the service down
            log.warning("retention.pass_failed", error=repr(exc), retry_in_s=self._interval_s)
            return None
        self.passes += 1
        self.last_report = report
        if report.removed:
            log.info("retention.pass", removed=report.removed, streams=len(report.items))
        return report
