"""A real consumer process for the worker's crash tests: `python -m tests.common.messaging.worker_process`.

It applies `thing` events into a `things` table. Environment:
DATABASE_URL, REDIS_URL, CONSUMER_NAME, HANG_ON (a `name` whose handler never returns),
SLOW_MS (per-event delay), CLAIM_IDLE_MS. It prints "ready" once consuming.
"""

from __future__ import annotations

import asyncio
import os
import signal

from common.core.envelope import Event
from common.core.settings import Settings
from common.db.pool import create_pool
from common.messaging.consumer import ConsumerWorker, WorkerOptions
from common.redis.client import make_redis


async def handle_thing(event: Event, conn) -> None:  # type: ignore[no-untyped-def]
    if event.data["name"] == os.environ.get("HANG_ON"):
        await asyncio.Event().wait()
    await asyncio.sleep(int(os.environ.get("SLOW_MS", "0")) / 1000)
    await conn.execute("INSERT INTO things (event_id, name) VALUES ($1, $2)", event.id, event.data["name"])


async def main() -> None:
    pool = await create_pool(os.environ["DATABASE_URL"], 1, 4)
    redis = make_redis(Settings(redis_url=os.environ["REDIS_URL"]))
    worker = ConsumerWorker(
        redis=redis,
        pool=pool,
        group="things_svc",
        consumer=os.environ["CONSUMER_NAME"],
        handlers={"thing": handle_thing},
        options=WorkerOptions(
            batch_size=int(os.environ.get("BATCH_SIZE", "10")),
            block_ms=100,
            claim_idle_ms=int(os.environ.get("CLAIM_IDLE_MS", "60000")),
            claim_interval_ms=100,
            retry_delay_ms=20,
        ),
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stop)
    task = asyncio.create_task(worker.run())
    print("ready", flush=True)
    await task
    await redis.aclose()
    await pool.close()


if __name__ == "__main__":
    asyncio.run(main())
