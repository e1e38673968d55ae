"""kill -9 of consumer processes mid-batch, several times and in different services, under a workload.

Each victim is caught applying a batch: its service's inbox table is locked by the test, so the batch
it reads stalls inside its transaction; once it holds entries it is killed (SIGKILL), then the lock
is released. project_svc and notif_svc come back (the supervisor
restarts them, as `swarm up` does) and re-read their own pending entries; one of the two comment_svc
replicas never comes back, so the other must take its entries over (XAUTOCLAIM after
CONSUMER_CLAIM_IDLE_MS). Then: replicas equal their sources (the convergence checker), nothing is
pending or dead-lettered, every event a victim held was applied, and every acknowledged write is there.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import asyncpg
import pytest
import redis.asyncio as aioredis

from common.swarm.procs import ChildProcess
from common.swarm.supervisor import Swarm
from tests.faults.conftest import Supervision, api_for, database_urls, running_system
from tests.faults.probes import (
    Held,
    converged,
    dead_letters,
    describe,
    fetch,
    held_by,
    inbox_locked,
    lock_waiters,
    notices_not_stored,
    redis_client,
    unsettled_streams,
)
from tests.faults.workload import Workload, until

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def system(servers, tmp_path_factory) -> Iterator[Swarm]:  # type: ignore[no-untyped-def]
    with running_system(servers, tmp_path_factory.mktemp("kill"), replicas={"comment_svc": 2}) as swarm:
        yield swarm


@pytest.fixture
async def redis(system: Swarm) -> AsyncIterator[aioredis.Redis]:
    client = redis_client(system.redis_url)
    yield client
    await client.aclose()


@dataclass
class Kill:
    label: str
    held: list[Held]


async def kill_mid_batch(
    supervision: Supervision,
    redis: aioredis.Redis,
    urls: dict[str, str],
    child: ChildProcess,
    *,
    retire: bool = False,
) -> Kill:
    """kill -9 `child` while it is applying a batch: inside its transaction, nothing committed.

    Its inbox is locked meanwhile, so the batch it takes stalls on its first event's inbox insert; once
    a session waits on the lock and Redis shows the entries handed to it, it dies holding them. (When
    it is its service's only running replica, the waiting session is surely its own, so it is killed
    then even if it holds nothing pending: a consumer that acknowledged before applying.)
    """
    group, consumer = child.spec.name, child.env["CONSUMER_NAME"]
    sole = [c for c in supervision.swarm.replicas_of(group) if c.running()] == [child]

    async def stalled_holding_a_batch(lock: asyncpg.Connection) -> tuple[list[Held]] | None:
        if not await lock_waiters(lock):
            return None
        # XREADGROUP records what it hands out before it answers, so a batch waiting on the lock is
        # already in Redis's pending list. Sole replica: the waiting session is surely its own.
        held = await held_by(redis, group, consumer)
        return (held,) if held or sole else None

    for _attempt in range(5):
        async with inbox_locked(urls[group]) as lock:
            try:
                (held,) = await until(
                    lambda: stalled_holding_a_batch(lock), timeout=3.0, interval=0.05, what="a batch in flight"
                )
            except AssertionError:
                continue  # no batch came its way (another replica took them): try again
            (supervision.retire if retire else supervision.kill)(child)
            return Kill(child.label, held)
    raise AssertionError(f"{child.label} was never caught applying a batch")


def swarm_check(system: Swarm) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        "-c",
        "from common.swarm.cli import main; main()",
        "check",
        "--data-dir",
        str(system.data_dir),
    ]
    return subprocess.run([*command, "--wait", "10", "--json"], capture_output=True, text=True, timeout=60)


async def back_up(supervision: Supervision, child: ChildProcess) -> None:
    async def ready() -> bool:
        return child.running() and await asyncio.to_thread(child.probe_ready, 0.5)

    await until(ready, timeout=30, what=f"{child.label} restarted and ready")


async def test_consumers_killed_mid_batch_lose_nothing_and_replicas_converge(system, redis, http):
    api = api_for(http, system)
    workload = Workload(api, teams=3, seed=1, doom_after_s=6.0)
    await workload.setup()
    kills: list[Kill] = []
    urls = database_urls(system)
    with Supervision(system) as supervision:
        project, notif = supervision.child("project_svc.1"), supervision.child("notif_svc.1")
        comments_1, comments_2 = supervision.child("comment_svc.1"), supervision.child("comment_svc.2")
        workload.start()
        try:
            await api.answers(30, succeeded=True)
            kills.append(await kill_mid_batch(supervision, redis, urls, project))
            kills.append(await kill_mid_batch(supervision, redis, urls, notif))
            # comment_svc.2 is gone for good: comment_svc.1 must reclaim what it held.
            kills.append(await kill_mid_batch(supervision, redis, urls, comments_2, retire=True))
            await back_up(supervision, project)
            kills.append(await kill_mid_batch(supervision, redis, urls, project))
            await back_up(supervision, notif)
            kills.append(await kill_mid_batch(supervision, redis, urls, notif))
            kills.append(await kill_mid_batch(supervision, redis, urls, comments_1))
            for child in (project, notif, comments_1):
                await back_up(supervision, child)
            await api.answers(30, succeeded=True)  # writes keep coming after the last restart
        finally:
            await workload.stop()
        assert comments_2.process is None and comments_1.restarts == 1 and project.restarts == notif.restarts == 2

        report = await converged(system, urls, timeout_s=30)
        assert report.clean, describe(report)
        assert set(report.checked) >= {"comment_svc.cards", "project_svc.cards.total_comments", "notif_svc.users"}
        # What an operator runs: `swarm check` on the system `swarm up` recorded, exit code 0 when clean.
        cli = await asyncio.to_thread(swarm_check, system)
        assert cli.returncode == 0 and json.loads(cli.stdout)["clean"], cli.stdout + cli.stderr

        # Nothing stuck: every entry the dead consumers held was taken over and acknowledged.
        assert await until(lambda: _settled(redis), timeout=15, what="no lag and nothing pending") == "settled"
        assert await dead_letters(redis) == []
        for kill in kills:
            service = kill.label.partition(".")[0]
            applied = await fetch(
                urls[service],
                "SELECT event_id::text FROM inbox WHERE event_id = ANY($1::uuid[])",
                [h.event_id for h in kill.held],
            )
            assert {h.event_id for h in kill.held} == {r["event_id"] for r in applied}, f"{kill.label} held {kill.held}"

        problems = await workload.verify()
        assert problems == [], "\n".join(problems)
        notif_dsn = urls["notif_svc"]
        assert await workload.notification_gaps(notif_dsn) == []
        assert await notices_not_stored(redis, notif_dsn) == []

    # The faults happened under load: writes were acknowledged throughout.
    held = [(kill.label, len(kill.held)) for kill in kills]
    assert all(n for _, n in held), held
    assert len(workload.ledger.comments) > 20, (workload.ledger.acknowledged(), workload.ops, api.statuses)
    print(
        "kills (entries held):", held, "acknowledged:", workload.ledger.acknowledged(), "answers:", dict(api.statuses)
    )


async def _settled(redis: aioredis.Redis) -> str | None:
    return None if await unsettled_streams(redis) else "settled"
